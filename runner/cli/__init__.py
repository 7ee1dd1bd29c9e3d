"""The `recipe` command line: a click group whose commands load lazily.

Each command lives in its own module under `runner.cli` and is imported only when it
runs, so `recipe lint` never pays for importing torch or TRL. This is also the edge
where a `UserError` (runner.errors) becomes `error: ...` on stderr and exit code 1;
commands raise it and never print-and-exit themselves.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from runner.errors import UserError
from runner.recipe.template import sandbox_refusal

# command name -> "module:attribute" under runner.cli
COMMANDS: dict[str, str] = {
    "lint": "runner.cli.lint_cmd:lint",
    "list": "runner.cli.list_cmd:list_recipes",
    "show": "runner.cli.show_cmd:show",
    "new": "runner.cli.new_cmd:new",
    "explain": "runner.cli.explain_cmd:explain",
    "plan": "runner.cli.plan_cmd:plan",
    "preview": "runner.cli.preview_cmd:preview",
    "run": "runner.cli.run_cmd:run",
    "infer": "runner.cli.infer_cmd:infer",
    "chat": "runner.cli.chat_cmd:chat",
    "merge": "runner.cli.merge_cmd:merge",
    "export": "runner.cli.export_cmd:export",
    "eval": "runner.cli.eval_cmd:eval_",
    "cache": "runner.cli.cache_cmd:cache",
}

HELP = {
    "lint": "Check recipes against the schema and the rule table.",
    "list": "List the shipped recipes.",
    "show": "Print a resolved recipe, or the arguments it expands to.",
    "new": "Copy a recipe (comments kept) and adapt it to your data or model.",
    "explain": "Explain a recipe key in plain words.",
    "plan": "Estimate peak GPU memory, term by term, before any download.",
    "preview": "Render training examples and show which tokens are trained.",
    "run": "Lint, prepare and train a recipe under accelerate launch.",
    "infer": "Generate from a trained run or model.",
    "chat": "Chat with a trained run in the terminal.",
    "merge": "Merge a LoRA/QLoRA adapter into its base model.",
    "export": "Write a trained run as a GGUF file for llama.cpp and Ollama.",
    "eval": "Loss, perplexity and sample generations for a trained run.",
    "cache": "List or clear the prepared data kept between runs.",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not built yet
            raise
        return getattr(module, attr)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a UserError (or a chat template the sandbox refused) is
        printed (no traceback) and exits 1."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = exc if isinstance(exc, UserError) else sandbox_refusal(exc)
            if error is None:
                raise  # click's own exits and usage errors, or a bug
            for line in error.report():
                click.echo(line, err=True)
            ctx.exit(error.exit_code)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every command module (and with them torch).
        rows = [(name, HELP[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    @staticmethod
    def _available(name: str) -> bool:
        module_name = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recipe-runner")
def main() -> None:
    """recipe: YAML recipes for fine-tuning language models with TRL.

    RECIPE arguments take a path or the name of a shipped recipe (see `recipe list`).
    """
