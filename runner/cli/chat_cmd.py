"""`recipe chat RUN`: a multi-turn conversation with a trained run in the terminal."""

from __future__ import annotations

import sys
from typing import Any

import click

from runner.after.target import AfterError
from runner.cli.options import quiet_libraries
from runner.cli.targets import BASE_4BIT_OPTION, SET_OPTION, TRUST_REMOTE_CODE_OPTION, target_of


@click.command()
@click.argument("run_or_model")
@click.option("--max-new-tokens", default=512, show_default=True, type=click.IntRange(1))
@click.option(
    "--temperature", type=click.FloatRange(0, min_open=True), help="Sample (default: greedy)."
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--seed", type=int, help="Seed for sampling.")
@BASE_4BIT_OPTION
@SET_OPTION
@TRUST_REMOTE_CODE_OPTION
def chat(
    run_or_model: str,
    max_new_tokens: int,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    base_4bit: bool | None,
    overrides: tuple[str, ...],
    trust_remote_code: bool,
) -> None:
    """Chat with a trained run (or a model directory) in the terminal.

    Multi-turn through the run's chat template; /reset clears the conversation, /exit
    or Ctrl-D ends it. Input may be piped in, one message per line.
    """

    from runner.after.chat import HELP, chat_loop
    from runner.after.load import load_target, load_tokenizer
    from runner.after.prompts import format_prompt, has_chat_template
    from runner.generation import Sampling, generate

    target = target_of(run_or_model, overrides, trust_remote_code)
    quiet_libraries()
    if not has_chat_template(target.settings, load_tokenizer(target)):
        template = target.settings.template.kind if target.settings else "none"
        raise AfterError(
            f"{target.path} has no chat template (its prompt template is "
            f"{template!r}), so it cannot hold a multi-turn conversation; send single "
            f'prompts with `recipe infer {run_or_model} --prompt "..."`'
        )
    loaded = load_target(target, base_4bit=base_4bit)
    sampling = Sampling(max_new_tokens, temperature, top_p, seed)
    interactive = sys.stdin.isatty()

    def read() -> str | None:
        if interactive:
            click.echo(click.style("you> ", bold=True), nl=False)
        line = sys.stdin.readline()
        return line if line else None

    def reply(history: list[dict[str, Any]]) -> str:
        ids = format_prompt(loaded.fmt, loaded.tokenizer, history)
        stream = sys.stdout.isatty()
        if stream:
            click.echo(click.style("assistant> ", bold=True), nl=False)
        answer = generate(
            loaded.model, loaded.tokenizer, [ids], sampling, loaded.stop_ids, stream=stream
        )[0]
        if not stream:
            click.echo(f"assistant> {answer.text}")
        return answer.text

    if interactive:
        click.echo(HELP)
    chat_loop(read, reply, click.echo)
