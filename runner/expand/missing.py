"""What a model or tokenizer needs that this machine may lack: the model itself
(`ModelNotFoundError`, with the loader's first line as the reason) or the `gguf` package.
Shared by `expand.model` and `expand.tokenizer`, which imports nothing from the model."""

from __future__ import annotations

import importlib.util

from runner.errors import UserError


class ModelNotFoundError(UserError):
    """The model (or tokenizer) a recipe names cannot be loaded on this machine."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_gguf_package() -> None:
    """transformers reads GGUF files through the gguf package (the `gguf` extra)."""
    if importlib.util.find_spec("gguf") is None:
        raise UserError(
            "a GGUF model needs the gguf package, which is not installed here; install "
            "it with `pip install 'recipe-runner[gguf]'`"
        )
