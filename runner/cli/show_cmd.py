"""`recipe show RECIPE`: the resolved recipe, or what it expands to.

`--as sft|lora|bnb` prints the keyword arguments from runner.expand.library_kwargs,
computed without importing the libraries; `--as launch` prints exactly the command
`recipe run` executes: on this machine, or for a GPU recipe on a machine without a GPU,
on the recipe's hardware (one line on stderr says so).
"""

from __future__ import annotations

import click

from runner.cli.options import SET_OPTION, checked_recipe, echo_missing_gpu
from runner.errors import UserError
from runner.recipe.yaml_dialect import dump_yaml

LIBRARY_OBJECTS = {
    "sft": ("sft_kwargs", "trl.SFTConfig"),
    "lora": ("lora_kwargs", "peft.LoraConfig"),
    "bnb": ("bnb_kwargs", "transformers.BitsAndBytesConfig"),
}


def effective_batch(settings) -> str:
    """Rows, and tokens, per optimizer step, all processes together: packed rows are each
    filled up to max_length with real tokens; padded rows hold at most max_length, the
    rest of each batch's longest row being padding."""
    training = settings.training
    per_device = int(training["per_device_train_batch_size"])
    accumulation = int(training["gradient_accumulation_steps"])
    processes = settings.num_processes
    rows = per_device * accumulation * processes
    line = (
        f"effective batch: {per_device} per device x {accumulation} accumulation x "
        f"{processes} process(es) = {rows} rows per optimizer step"
    )
    if not settings.max_length:
        return line
    tokens = rows * settings.max_length
    if training["packing"]:
        return line + f"; packed: about {tokens:,} tokens per optimizer step, no padding"
    return line + (
        f"; up to {tokens:,} tokens per optimizer step (real tokens depend on the rows' "
        "lengths, the rest is padding; `recipe preview` shows them, packing removes it)"
    )


@click.command()
@click.argument("recipe")
@SET_OPTION
@click.option(
    "--as",
    "as_",
    type=click.Choice(["recipe", "sft", "lora", "bnb", "launch"]),
    default="recipe",
    show_default=True,
    help="recipe: the resolved recipe; sft/lora/bnb: keyword arguments of SFTConfig / "
    "LoraConfig / BitsAndBytesConfig; launch: the accelerate command `recipe run` executes.",
)
@click.option("--cpu", is_flag=True, help="With --as launch: as `recipe run --cpu` would run it.")
def show(recipe: str, overrides: tuple[str, ...], as_: str, cpu: bool) -> None:
    """Print RECIPE resolved (defaults and --set applied), or what it expands to."""
    settings = checked_recipe(recipe, overrides).settings
    if as_ == "recipe":
        click.echo(f"# {effective_batch(settings)}")
        click.echo(dump_yaml(settings.resolved), nl=False)
        return
    if as_ == "launch":
        from runner.expand.launch import launch_argv, shell_command
        from runner.expand.placement import choose_placement, gpu_available

        placement = choose_placement(settings, gpu_here=gpu_available(), force_cpu=cpu)
        echo_missing_gpu(settings, placement)
        click.echo(shell_command(launch_argv(settings, placement)))
        return
    from runner.expand import library_kwargs

    function, target = LIBRARY_OBJECTS[as_]
    kwargs = getattr(library_kwargs, function)(settings)
    if kwargs is None:
        reason = "method full trains no adapter" if as_ == "lora" else "the model is not quantized"
        raise UserError(f"{recipe}: no {target} - {reason} (method: {settings.method})")
    click.echo(f"# keyword arguments for {target}(**kwargs)")
    if as_ == "sft":
        click.echo("# (the run adds data-dependent arguments on top)")
    click.echo(dump_yaml(kwargs), nl=False)
