"""Rules about `data.template`: that it names a template that exists, that it can render
the data's format, and that the tokenizer has the chat template it relies on."""

from __future__ import annotations

from collections.abc import Iterator

from runner.data.formats import SHAPE
from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR, WARNING
from runner.recipe.models import chat_template_of, has_local_tokenizer
from runner.recipe.template import known_templates


def _key(ctx: RuleContext) -> tuple[str, ...]:
    return ("data", "template") if ctx.written("data", "template") else ("data",)


def _template_unknown(ctx: RuleContext) -> Iterator[Finding]:
    template = ctx.s.template
    if template.path is not None and not template.path.is_file():
        yield Finding(
            _key(ctx),
            {
                "value": ctx.block("data").get("template"),
                "path": str(template.path),
                "known": ", ".join(known_templates()),
            },
        )


JINJA_SUFFIXES = (".jinja", ".j2")


def _template_not_jinja(ctx: RuleContext) -> Iterator[Finding]:
    """A template file is named *.jinja or *.j2 and parses as Jinja. The name is checked
    first, and such a file is never read: plain text (/etc/hostname, a README) parses as
    a valid Jinja template that prints itself."""
    path = ctx.s.template.path
    if path is None or not path.is_file():
        return
    if path.suffix.lower() not in JINJA_SUFFIXES:
        yield Finding(
            _key(ctx),
            {"path": str(path), "problem": "its name does not end in .jinja or .j2"},
        )
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        yield Finding(_key(ctx), {"path": str(path), "problem": f"cannot be read ({exc})"})
        return
    import jinja2  # only for a recipe with a template file (~20 ms)

    try:
        chat_template_environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        yield Finding(
            _key(ctx), {"path": str(path), "problem": f"line {exc.lineno}: {exc.message}"}
        )


def chat_template_environment():
    """A Jinja environment that parses what transformers' chat templates may use: loop
    controls and TRL/transformers' `{% generation %}` blocks (which mark trained tokens)."""
    import jinja2
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = frozenset({"generation"})

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return jinja2.Environment(extensions=[Generation, "jinja2.ext.loopcontrols"])


def _template_unsafe(ctx: RuleContext) -> Iterator[Finding]:
    """A chat template that reaches for Python internals (`x.__class__`, `x['_y']`,
    `x|attr('__init__')`): transformers renders templates in Jinja's sandbox, which
    refuses those at render time; said here at the recipe's line instead, for the
    template file and for the model's own chat template (read from its files)."""
    template = ctx.s.template
    if template.path is not None:
        if template.path.suffix.lower() not in JINJA_SUFFIXES or not template.path.is_file():
            return  # template-not-jinja / template-unknown say what is wrong
        what, text = str(template.path), _read(template.path)
    elif template.kind == "chat":
        what, text = "the model's chat template", chat_template_of(ctx.s.model)
    else:
        return
    names = private_names(text) if text else []
    if names:
        yield Finding(_key(ctx), {"what": what, "names": ", ".join(names)})


def _read(path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def private_names(text: str) -> list[str]:
    """The `_`-prefixed attribute or key names a template reads (sorted, once each);
    [] when it does not parse (template-not-jinja says so)."""
    import jinja2
    from jinja2 import nodes

    try:
        tree = chat_template_environment().parse(text)
    except jinja2.TemplateSyntaxError:
        return []
    found = {node.attr for node in tree.find_all(nodes.Getattr)}
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(node.arg.value)
    for node in tree.find_all(nodes.Filter):
        if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
            found.add(str(node.args[0].value))
    return sorted(name for name in found if name.startswith("_"))


def _template_outside(ctx: RuleContext) -> Iterator[Finding]:
    template = ctx.s.template
    path = template.path
    if path is None or template.is_shipped or not path.is_file():
        return
    if not path.resolve().is_relative_to(ctx.recipe.directory):
        yield Finding(_key(ctx), {"path": str(path), "folder": str(ctx.recipe.directory)})


def _template_cannot_render(ctx: RuleContext) -> Iterator[Finding]:
    template = ctx.s.template
    for source in ctx.s.sources:
        if not template.renders(SHAPE[source["format"]]):
            yield Finding(_key(ctx), {"format": source["format"], "template": template.kind})
            return


def _chat_template_missing(ctx: RuleContext) -> Iterator[Finding]:
    """`template: chat` needs the tokenizer's own chat template: the byte-level tokenizer
    has none, and a tokenizer whose files are on this machine (a local directory or the
    Hugging Face cache) is read without loading it."""
    if ctx.s.template.kind != "chat":
        return
    model = ctx.s.model
    source = model.get("tokenizer") or model.get("id")
    if ctx.s.byte_level_tokenizer:
        yield Finding(_key(ctx), {"tokenizer": "the byte-level tokenizer"})
    elif has_local_tokenizer(model) and chat_template_of(model) is None:
        yield Finding(_key(ctx), {"tokenizer": f"the tokenizer {source}"})


RULES = [
    Rule(
        "template-unknown",
        ERROR,
        "data.template {value!r} is not a known template, and there is no such file "
        "(looked for {path})",
        "use one of {known}, or the path of a Jinja chat template relative to the recipe's folder",
        _template_unknown,
    ),
    Rule(
        "template-not-jinja",
        ERROR,
        "the template file {path} is not a Jinja chat template: {problem}",
        "a template file is a Jinja chat template named *.jinja or *.j2, like the shipped "
        "llama3-training.jinja; for text prompts use `template: alpaca` or `template: plain`",
        _template_not_jinja,
    ),
    Rule(
        "template-unsafe",
        ERROR,
        "{what} reads Python internals ({names}): a chat template is text formatting, and "
        "transformers' sandbox refuses this when it renders",
        "use a template that only formats the messages (message['role'], message['content'], "
        "loops and conditions); never run a template that reaches for Python objects",
        _template_unsafe,
    ),
    Rule(
        "template-outside-recipe",
        WARNING,
        "the template file {path} is outside the recipe's folder ({folder})",
        "copy it next to the recipe so the recipe and its template travel together",
        _template_outside,
    ),
    Rule(
        "template-cannot-render",
        ERROR,
        "format {format} is a conversation, but data.template {template} writes text prompts",
        "set `data.template: chat` (the model's chat template) or a .jinja chat template, "
        "or use an instruction format (alpaca, dolly, prompt_completion)",
        _template_cannot_render,
    ),
    Rule(
        "template-chat-missing",
        ERROR,
        "data.template is chat, but {tokenizer} has no chat template",
        "use `template: alpaca` or `template: plain` (text prompts), or a .jinja chat "
        "template file relative to the recipe",
        _chat_template_missing,
    ),
]
