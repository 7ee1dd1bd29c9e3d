"""Which prompt template a recipe uses, decided once when the recipe is resolved.

`data.template` is one of:
- `chat`: the model's own chat template (from its tokenizer);
- `alpaca` / `plain`: the text templates shipped in templates/ (alpaca.json, plain.json);
- a Jinja chat template file: a path relative to the recipe's folder, or the name of a
  template shipped in templates/ (e.g. `llama3-training.jinja`).

`resolve_template` turns the recipe's value into the resolved one (a name, or an
absolute file path); `Template` is the typed view every later step reads. Pure: no
transformers, no Jinja import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner import TEMPLATES_DIR
from runner.errors import UserError

CHAT = "chat"
TEXT_TEMPLATES = ("alpaca", "plain")
NAMED_TEMPLATES = (CHAT, *TEXT_TEMPLATES)
JINJA = "jinja"


def shipped_chat_templates() -> list[str]:
    """Names of the Jinja chat templates shipped in templates/."""
    return sorted(p.name for p in TEMPLATES_DIR.glob("*.jinja"))


def known_templates() -> list[str]:
    """Every template name a recipe may use without a path."""
    return [*NAMED_TEMPLATES, *shipped_chat_templates()]


def resolve_template(value: str, recipe_dir: Path) -> str:
    """The resolved `data.template`: a named template as it is, else the absolute path of
    the file (relative to the recipe's folder first, then the shipped templates/). A
    file that exists nowhere resolves to where it was looked for; lint reports it."""
    if value in NAMED_TEMPLATES:
        return value
    local = (recipe_dir / Path(value).expanduser()).resolve()
    if local.is_file():
        return str(local)
    shipped = TEMPLATES_DIR / value
    if Path(value).name == value and shipped.is_file():
        return str(shipped.resolve())
    return str(local)


@dataclass(frozen=True)
class Template:
    """A resolved template: its kind and, for a Jinja file, its path.

    `file` is a copy of the template's text to read instead of the shipped one: a run
    directory's `template/` file (runner.run.template_copy), so a trained run renders
    its prompts from what it trained with, wherever the package or checkout is.
    """

    value: str  # the resolved data.template
    file: Path | None = None

    @property
    def kind(self) -> str:
        """`chat`, `alpaca`, `plain` or `jinja` (a chat template file)."""
        return self.value if self.value in NAMED_TEMPLATES else JINJA

    @property
    def is_text(self) -> bool:
        """A text template (alpaca, plain): prompts are text, not conversations."""
        return self.value in TEXT_TEMPLATES

    @property
    def uses_chat_template(self) -> bool:
        """Prompts go through a chat template: the model's own or a Jinja file."""
        return not self.is_text

    def renders(self, shape: str) -> bool:
        """Whether rows of this shape (runner.data.formats.SHAPE) can go through the
        template: conversations need a chat template."""
        return not (self.is_text and shape in ("messages", "mixed"))

    @property
    def path(self) -> Path | None:
        """The Jinja file of a file template, else None."""
        return None if self.value in NAMED_TEMPLATES else Path(self.value)

    @property
    def text_file(self) -> Path | None:
        """The JSON file with a text template's prompt strings (`prompt_input`,
        `prompt_no_input`): the copy in `file`, else the shipped one; None for chat
        templates."""
        if not self.is_text:
            return None
        return self.file or TEMPLATES_DIR / f"{self.value}.json"

    @property
    def is_shipped(self) -> bool:
        path = self.path
        return path is not None and path.parent == TEMPLATES_DIR.resolve()


def sandbox_refusal(exc: BaseException) -> UserError | None:
    """Jinja's sandbox refusing what a chat template reached for while transformers
    rendered it (`x.__class__`...), as a UserError; None for any other exception. (Lint's
    `template-unsafe` finds the plain cases at the recipe's line first.)"""
    if type(exc).__name__ != "SecurityError" or not type(exc).__module__.startswith("jinja2"):
        return None
    return UserError(
        f"a chat template reached for Python internals ({exc}); transformers renders "
        "templates in Jinja's sandbox, which refused it, and nothing of it ran. Use a "
        "template that only formats the messages (check data.template, or the model's "
        "own chat template)"
    )
