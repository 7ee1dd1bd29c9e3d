"""The effective settings of a recipe: the one typed view every step reads.

`Settings(resolved)` wraps a resolved recipe (runner.recipe.resolve, where every
default is decided) and answers the questions the lint rules, `recipe plan`, the
expansion into library objects, training and the after-training commands all ask -
which method, which dtype and mixed precision, which template, which launch strategy,
what a training, LoRA or quantization value will be once the library fills its own
defaults, which data sources the recipe reads - so each is answered in one place, and
each key is read through one property here. Pure: no torch, transformers, trl or
datasets import.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.recipe.hardware import Card, card_for
from runner.recipe.models import gguf_file_of
from runner.recipe.resolve import BYTE_LEVEL, data_sources, eval_sources, library_view
from runner.recipe.template import Template


@dataclass(frozen=True)
class Settings:
    """A resolved recipe, read through named properties (see the module docstring)."""

    resolved: dict[str, Any]
    # --trust-remote-code on this command line (runner.recipe.remote_code); never the recipe
    remote_code_allowed: bool = False

    # --- the blocks, as resolved ------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.resolved["name"])

    @property
    def method(self) -> str:
        """full | lora | qlora."""
        return str(self.resolved["method"])

    @property
    def model(self) -> dict[str, Any]:
        return self.resolved["model"]

    @property
    def data(self) -> dict[str, Any]:
        return self.resolved["data"]

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Every data source, train then eval (runner.recipe.resolve.data_sources)."""
        return data_sources(self.data)

    @property
    def eval_sources(self) -> list[dict[str, Any]]:
        """The sources data.eval lists (none when it is a fraction or absent)."""
        return eval_sources(self.data)

    @property
    def launch(self) -> dict[str, Any]:
        return self.resolved["launch"]

    @property
    def hardware(self) -> dict[str, Any]:
        return self.resolved.get("hardware") or {}

    @property
    def output_dir(self) -> Path:
        return Path(self.resolved["output_dir"])

    # --- training ---------------------------------------------------------------------

    @functools.cached_property
    def _library(self) -> dict[str, dict[str, Any]]:
        return library_view(self.resolved)

    @property
    def training(self) -> Mapping[str, Any]:
        """Every training value as SFTConfig will see it: the recipe's, else TRL's
        default (runner.recipe.resolve.library_view)."""
        return self._library["training"]

    @property
    def seed(self) -> int:
        return int(self.training["seed"])

    @property
    def max_length(self) -> int | None:
        return self.training["max_length"]

    @property
    def mixed_precision(self) -> str:
        """accelerate's mixed precision on a GPU: bf16, fp16 or no."""
        if self.training["bf16"]:
            return "bf16"
        if self.training["fp16"]:
            return "fp16"
        return "no"

    def strategy_of(self, kind: str) -> str:
        """eval/save/logging strategy as a plain lower-case string."""
        return str(self.training[f"{kind}_strategy"]).lower()

    @property
    def has_eval_data(self) -> bool:
        """Whether data.eval is given (a fraction or a list of sources)."""
        return bool(self.data.get("eval"))

    @property
    def evaluates(self) -> bool:
        """Whether the run evaluates during training."""
        return self.has_eval_data and self.strategy_of("eval") != "no"

    # When data.eval is evaluated, decided here and read by runner.train, the expansion
    # and lint's messages alike: before training, during it (eval_strategy), after it.

    @property
    def eval_before(self) -> bool:
        """The held-out loss is measured before training (step 0; not again on
        --resume): with data.eval, on one process or DDP. DeepSpeed and FSDP engines
        cannot evaluate before they train."""
        return self.has_eval_data and self.strategy in ("single", "ddp")

    @property
    def eval_after(self) -> bool:
        """The held-out loss of the trained model is measured, whenever there is
        data.eval (whatever eval_strategy says; runner.run.record.final_evaluation takes
        the Trainer's own evaluation at the last step when it made one)."""
        return self.has_eval_data

    def eval_schedule(self, during: bool = True) -> str:
        """When data.eval is evaluated, in words: e.g. "before training, every 50 steps
        and after training"; `during=False` leaves out the evaluations during training."""
        if not self.has_eval_data:
            return "never (there is no data.eval)"
        parts = ["before training"] if self.eval_before else []
        if during and self.evaluates:
            parts.append(self._eval_interval())
        if parts == ["before training"]:
            return "before and after training"
        return ", ".join(parts) + " and after training" if parts else "after training"

    def _eval_interval(self) -> str:
        if self.strategy_of("eval") == "epoch":
            return "at the end of each epoch"
        steps = self.training["eval_steps"]
        if isinstance(steps, float) and steps < 1:
            return f"every {steps:.0%} of the run"
        return f"every {steps:g} steps"

    @property
    def early_stopping(self) -> dict[str, Any] | None:
        return self.resolved.get("early_stopping")

    @property
    def exact_match(self) -> dict[str, Any] | None:
        return self.data.get("exact_match")

    # --- model ------------------------------------------------------------------------

    @property
    def model_dtype(self) -> str:
        """The dtype the weights are loaded in."""
        return str(self.model["dtype"])

    @property
    def from_config(self) -> bool:
        """The model is built from `model.config` with random weights."""
        return isinstance(self.model.get("config"), dict)

    @property
    def gguf_path(self) -> Path | None:
        """The local GGUF file the model comes from (model.id itself, or model.gguf_file
        in the folder model.id names), else None."""
        return gguf_file_of(self.model)

    @property
    def builds_base(self) -> bool:
        """The run makes its own base model in `<run>/base/` before training: random
        weights from model.config, or the dequantized weights of a GGUF file."""
        return self.from_config or self.gguf_path is not None

    @property
    def trust_remote_code(self) -> bool:
        """Whether the model's and tokenizer's own Python code may run: the recipe asks
        for it (model.trust_remote_code) and the command line allowed it
        (--trust-remote-code; runner.recipe.remote_code)."""
        return self.remote_code_allowed and self.model["trust_remote_code"] is True

    @property
    def byte_level_tokenizer(self) -> bool:
        return self.model.get("tokenizer") == BYTE_LEVEL

    @property
    def adapter(self) -> bool:
        """LoRA or QLoRA: an adapter is trained on a frozen base."""
        return self.method in ("lora", "qlora")

    @property
    def lora_config(self) -> Mapping[str, Any] | None:
        """Every LoraConfig value as PEFT will see it (the recipe's, else PEFT's default),
        or None when no adapter is trained (full fine-tuning, or no lora block)."""
        if not (self.adapter and isinstance(self.resolved.get("lora"), dict)):
            return None
        return self._library["lora"]

    @property
    def quantization_config(self) -> Mapping[str, Any] | None:
        """Every BitsAndBytesConfig value as transformers will see it (the recipe's, else
        its default), or None when the base is not quantized (method full, or no
        quantization block)."""
        if self.method == "full" or not isinstance(self.resolved.get("quantization"), dict):
            return None
        return self._library["quantization"]

    @property
    def quantized_bits(self) -> int | None:
        block = self.resolved.get("quantization") or {}
        if block.get("load_in_4bit") is True:
            return 4
        if block.get("load_in_8bit") is True:
            return 8
        return None

    @property
    def template(self) -> Template:
        return Template(str(self.data["template"]))

    @property
    def template_variables(self) -> dict[str, Any]:
        """What the chat template reads besides the conversation (data.template_variables,
        with the date fixed by runner.recipe.resolve)."""
        return dict(self.data["template_variables"])

    @property
    def overlong_rows(self) -> str:
        """drop | truncate | error: what becomes of a row longer than max_length
        (runner.data.truncation)."""
        return str(self.data["overlong_rows"])

    # --- launch -----------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        """single | ddp | deepspeed | fsdp."""
        return str(self.launch["strategy"])

    @property
    def num_processes(self) -> int:
        return int(self.launch["num_processes"])

    @property
    def num_machines(self) -> int:
        return int(self.launch["num_machines"])

    @property
    def machine_rank(self) -> int:
        """This machine's rank: 0 on the main machine (the one that keeps the record)."""
        return int(self.launch.get("machine_rank", 0))

    @property
    def zero_stage(self) -> int:
        """The DeepSpeed ZeRO stage, 0 when DeepSpeed is not used."""
        return int(self.launch["deepspeed"]["zero_stage"]) if self.strategy == "deepspeed" else 0

    @property
    def shards_weights(self) -> bool:
        """ZeRO-3 or FSDP: each process holds a shard of the weights."""
        return self.zero_stage == 3 or self.strategy == "fsdp"

    # --- hardware ---------------------------------------------------------------------

    @functools.cached_property
    def card(self) -> Card | None:
        """The card the recipe targets, or None when `hardware` names none."""
        return card_for(self.hardware)

    @property
    def cpu_only(self) -> bool:
        """The recipe itself asks to train on the CPU (hardware.gpu: cpu or use_cpu)."""
        return self.hardware.get("gpu") == "cpu" or self.training["use_cpu"] is True
