"""Load a target's tokenizer and model, offline, the way the run trained it.

A run's model loads with the keyword arguments training used
(runner.expand.model.model_kwargs: dtype, attention kernel, revision, quantization), in
one process on one device:
- full fine-tune: the model in `final/`;
- LoRA/QLoRA: the base model (quantized as trained unless `base_4bit` says otherwise; a
  `model.config` or GGUF base from the run's `base/`, where `recipe run` saved the
  weights it started from) with the adapter from `final/` on top.
What is this module's own: a plain model directory or cached hub id (as saved, dtype
"auto"), an adapter directory without a recipe (its base as saved, NF4 when 4-bit), the
adapter on top, and the messages.

A run's tokenizer carries the chat template training rendered with, from the run's copy
(runner.run.template_copy: `template/` in the run directory), decided by
runner.expand.chat_template; its prompts never read the package's or checkout's
templates.

Every `from_pretrained` runs with `local_files_only=True`; a model that is not on this
machine was already refused by `runner.after.target.require_model` with a message that
says how to provide it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.prompts import prompt_format, stop_token_ids
from runner.after.target import AfterError, Target, require_model
from runner.data.templates import PromptFormat
from runner.expand.placement import Placement
from runner.recipe.remote_code import FLAG, needs_own_code
from runner.recipe.settings import Settings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Loaded:
    """A loaded target: model (a PeftModel for adapters), tokenizer, how prompts are
    written (`fmt`), the ids generation stops at, and whether the base is 4-bit."""

    target: Target
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fmt: PromptFormat
    stop_ids: list[int]
    quantized: bool


def wants_4bit(target: Target, base_4bit: bool | None) -> bool:
    """Whether the adapter's base loads quantized: as training loaded it (the recipe's
    quantization block: QLoRA's 4-bit) unless `--base-4bit/--no-base-4bit` says otherwise."""
    from runner.expand.library_kwargs import bnb_kwargs

    if not target.adapter:
        return False
    if base_4bit is not None:
        return base_4bit
    return target.settings is not None and bnb_kwargs(target.settings) is not None


def load_tokenizer(target: Target) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the run or model (for an adapter without one, its base's)."""
    from transformers import AutoTokenizer

    weights = Path(target.weights)
    has_own = any(
        (weights / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    )
    source = target.weights if has_own or not target.base else target.base
    if source == target.base:
        require_model(source, target.revision, where=str(target.path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, local_files_only=True, trust_remote_code=target.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        refused = needs_own_code(exc, source, "the tokenizer", _allow(target))
        if refused is not None:
            raise refused from None
        raise AfterError(f"cannot load the tokenizer from {source}: {_first_line(exc)}") from None
    if target.settings is not None:
        from runner.expand.chat_template import settle_chat_template
        from runner.run.template_copy import run_chat_template

        # the chat template training rendered with: the run's own copy of it (a run made
        # before copies were kept: the one saved with its tokenizer)
        saved = run_chat_template(target.path) or tokenizer.chat_template
        settle_chat_template(tokenizer, target.settings.template, saved=saved, source=source)
    return tokenizer


def run_settings(target: Target) -> Settings | None:
    """The run's settings with the model's own code allowed as this command allows it
    (runner.after.target.with_code_permission), so `model_kwargs` reads it from them."""
    if target.settings is None:
        return None
    return replace(target.settings, remote_code_allowed=target.trust_remote_code)


def base_kwargs(
    target: Target, device: str, *, quantize: bool, dtype: str | None = None
) -> tuple[str, dict[str, Any]]:
    """(reference, keyword arguments) of a target's base model, without loading it: a
    run's as training loaded it (runner.expand.model.model_kwargs: model.id, or the
    `base/` the run built), in one process on `device`; an adapter without a recipe's
    base as saved (dtype auto, NF4 when 4-bit)."""
    from runner.expand.model import model_kwargs, quantization_fields
    from runner.expand.source import model_source
    from runner.run.directory import RunDirectory

    placement = Placement(cpu=device == "cpu")
    settings = run_settings(target)
    if settings is None:
        kwargs: dict[str, Any] = {
            "dtype": dtype or "auto",
            "device_map": {"": device},
            "trust_remote_code": target.trust_remote_code,  # runner.after.target
        }
        if quantize:
            kwargs["quantization_config"] = quantization_fields(
                None, kwargs["dtype"], placement, force_4bit=True
            )
        return str(target.base), kwargs
    source = model_source(settings, RunDirectory(target.path).base)
    kwargs = model_kwargs(
        settings, placement, device, source=source, quantize=quantize, dtype=dtype, one_process=True
    )
    return source, kwargs


def final_kwargs(target: Target, device: str) -> dict[str, Any]:
    """Keyword arguments of a full model in `final/` or a plain model directory: a run's
    as training loaded its model (not quantized: the trained weights are whole), a plain
    model's as saved (dtype auto)."""
    from runner.expand.model import model_kwargs

    settings = run_settings(target)
    if settings is None:
        return {
            "dtype": "auto",
            "device_map": {"": device},
            "trust_remote_code": target.trust_remote_code,  # runner.after.target
        }
    placement = Placement(cpu=device == "cpu")
    return model_kwargs(
        settings, placement, device, source=target.weights, quantize=False, one_process=True
    )


def load_base_model(
    target: Target,
    tokenizer: PreTrainedTokenizerBase,
    device: str,
    *,
    quantize: bool,
    dtype: str | None = None,
) -> PreTrainedModel:
    """The base model of a target: an adapter's base, or the model a full run started
    from (for a model.config or GGUF run, the base it saved in `base/`)."""
    from transformers import AutoModelForCausalLM

    reference, kwargs = base_kwargs(target, device, quantize=quantize, dtype=dtype)
    reference = require_model(reference, kwargs.get("revision"), where=str(target.path))
    model = _from_pretrained(AutoModelForCausalLM, reference, kwargs, _allow(target))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model


def load_target(
    target: Target, *, base_4bit: bool | None = None, device: str | None = None
) -> Loaded:
    """The trained model of a target with its tokenizer and stop ids, ready to generate."""
    from transformers import AutoModelForCausalLM

    from runner.expand.placement import gpu_available

    if device is None:
        device = Placement(cpu=not gpu_available()).device()
    if target.is_run:
        from runner.logs import log_file_of, quiet_libraries

        quiet_libraries(log_file_of(target.path, _command_name()), cpu=device == "cpu")
    tokenizer = load_tokenizer(target)
    quantize = wants_4bit(target, base_4bit)
    if target.adapter:
        from peft import PeftModel

        base = load_base_model(target, tokenizer, device, quantize=quantize)
        try:
            model = PeftModel.from_pretrained(base, target.weights)
        except (OSError, ValueError, RuntimeError) as exc:
            raise AfterError(
                f"cannot apply the adapter in {target.weights}: {_first_line(exc)} "
                "(was it trained on this base model?)"
            ) from None
    else:
        kwargs = final_kwargs(target, device)
        model = _from_pretrained(AutoModelForCausalLM, target.weights, kwargs, _allow(target))
    model.eval()
    fmt = prompt_format(target.settings, tokenizer, target.path if target.is_run else None)
    generation_config = getattr(model, "generation_config", None)
    stops = stop_token_ids(fmt, tokenizer, getattr(generation_config, "eos_token_id", None))
    return Loaded(target, model, tokenizer, fmt, stops, quantize)


def as_trained(loaded: Loaded) -> Loaded:
    """The run with the numerics it trained with: a 4-bit base on the CPU keeps the
    layout training used, not bitsandbytes' bfloat16 inference kernel (which it would
    switch to on a CPU with AVX512-BF16, changing logits by up to ~1)."""
    if loaded.quantized:
        from runner.expand.model import keep_trainable_4bit_layout

        keep_trainable_4bit_layout(loaded.model)
    return loaded


def _command_name() -> str:
    """The `recipe` command running (infer, chat, eval...), for its log file's name."""
    import click

    context = click.get_current_context(silent=True)
    return context.info_name if context is not None and context.info_name else "after"


def _allow(target: Target) -> str:
    """How to let a target's own code run (for needs_own_code's message)."""
    if target.is_run:
        return f"train the run with model.trust_remote_code: true and {FLAG}, then give {FLAG}"
    return f"give {FLAG} to the command"


def _from_pretrained(
    cls: Any, reference: str, kwargs: dict[str, Any], allow: str = f"give {FLAG}"
) -> Any:
    from runner.expand.model import from_pretrained_kwargs

    try:
        ready = from_pretrained_kwargs(kwargs)
        return cls.from_pretrained(reference, local_files_only=True, **ready)
    except OSError as exc:
        raise AfterError(f"cannot load the model {reference}: {_first_line(exc)}") from None
    except (ImportError, ValueError) as exc:
        refused = needs_own_code(exc, reference, "the model", allow)
        if refused is not None:
            raise refused from None
        hint = " (try --no-base-4bit)" if "quantization_config" in kwargs else ""
        raise AfterError(f"cannot load the model {reference}: {_first_line(exc)}{hint}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
