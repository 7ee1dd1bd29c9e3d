"""The launch files of `recipe run`: what the training processes started on this
machine's launch home read (runner.expand.engines.launch_home: the run directory on the
machine that owns the run, `<run>/.recipe-node-<rank>/` on the others), written before
anything trains."""

from __future__ import annotations

from pathlib import Path

import click


def write_launch_files(
    home, checked, placement, argv, prepared, overrides, point, session, model_code
) -> None:
    """Write where the prepared data is, the recipe (on the machine that owns the run:
    with its record, run.json, and the model code allowed; elsewhere the resolved recipe
    alone), the accelerate (and DeepSpeed) config and, for a model.config or GGUF recipe,
    the base model it starts from (runner.expand.model.save_base_model)."""
    from runner.cli.run_data import keep_data
    from runner.data.store import write_pointer
    from runner.expand.engines import owns_run, stray_default_config
    from runner.expand.launch import write_accelerate_config
    from runner.recipe.yaml_dialect import dump_yaml
    from runner.run.checkpoints import ResumePoint
    from runner.run.record import record_start

    settings = checked.settings
    prepared = keep_data(prepared, home.path)
    write_pointer(home.path, prepared)
    if owns_run(settings):
        resume = ResumePoint(point) if point is not None else None
        record_start(home, checked, argv, prepared, overrides, resume, session)
        if model_code is not None:  # the code allowed, hashed (--resume and infer compare)
            home.update_run(remote_code=model_code.record())
    else:  # the run's record is machine 0's
        home.resolved.write_text(dump_yaml(settings.resolved), encoding="utf-8")
    write_accelerate_config(settings, placement, home.path)
    stray = stray_default_config()
    if stray is not None:
        click.echo(f"note: {stray} (accelerate's default config) is not used; this run's "
                   f"is {home.path / 'accelerate.yaml'}", err=True)  # fmt: skip
    if settings.builds_base and not home.base.is_dir():
        write_base(settings, home.base)


def write_base(settings, base: Path) -> None:
    """The base model a model.config or GGUF recipe starts from, written into the run
    (runner.expand.model.save_base_model), saying what it does: a GGUF file takes a
    while to dequantize."""
    import time

    from runner.expand.model import save_base_model

    started = time.perf_counter()
    gguf = settings.gguf_path
    if gguf is not None:
        click.echo(f"model: dequantizing {gguf.name} into {base} ...", err=True)
    save_base_model(settings, base)
    if gguf is not None:
        click.echo(f"model: {base} written in {time.perf_counter() - started:.1f} s", err=True)
