"""`recipe eval`: loss, perplexity and reference-compared generations of a run.

The loss is computed the way training computed its eval loss: the loss setup is the one
training decides (runner.expand.loss: completion-only or assistant-only loss, the
end-of-turn token), the examples are rendered, tokenized and fitted by the same
`fitted`, and go into TRL's `SFTTrainer.evaluate` with the same SFTConfig arguments
(runner.expand.training.run_sft_kwargs), so on the run's eval split it reproduces the
eval_loss in run.json. Perplexity is exp(loss). Then the first N examples are answered
greedily and compared with their references.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.target import AfterError, Target

if TYPE_CHECKING:
    from runner.after.load import Loaded
    from runner.expand.loss import LossSetup

EVAL_JSON = "eval.json"
GENERATIONS = "eval-generations.jsonl"
SHORT_ANSWER_WORDS = 20  # exact match is reported when every reference is this short


@dataclass
class EvalData:
    examples: list[dict[str, Any]]
    shape: str
    description: str
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def eval_data(target: Target, data: str | None, fmt: str | None) -> EvalData:
    """The run's eval split, or the rows of `--data` read as `--format` (default: the
    format of the run's training data)."""
    from runner.data.formats import SHAPE
    from runner.data.rows import load_examples, read_source
    from runner.recipe.schema import fill_defaults, load_schema

    settings = target.settings
    if settings is None:
        raise AfterError(
            f"{target.path} is not a run directory; recipe eval takes the output_dir "
            "of a `recipe run`"
        )
    if data is None:
        examples = load_examples(settings)
        if not examples.eval:
            raise AfterError(
                f"the run {target.path} has no eval split (its recipe has no "
                "data.eval); give rows to evaluate on with --data SOURCE --format FORMAT"
            )
        changes = data_changes(target.path, examples.fingerprints)
        description = "the run's eval split" + (" (changed since training)" if changes else "")
        return EvalData(examples.eval, examples.shape, description, notes=changes)
    formats = {source["format"] for source in settings.data["train"]}
    if fmt is None and len(formats) != 1:
        raise AfterError(
            f"say how {data} is laid out with --format "
            f"({', '.join(sorted(SHAPE))}); the run trained on several formats"
        )
    fmt = fmt or next(iter(formats))
    if not settings.template.renders(SHAPE[fmt]):
        raise AfterError(
            f"format {fmt} needs a chat template, but the run used the "
            f"{settings.template.kind} template (evaluate instruction-shaped data)"
        )
    path = Path(data).expanduser()
    source = fill_defaults(
        {"source": str(path.resolve()) if path.exists() else data, "format": fmt},
        load_schema()["$defs"]["data_source"],
    )
    read = read_source(source, settings.seed, shuffle=False)
    rows, bad = read.examples, read.bad
    if not rows:
        raise AfterError(f"{data}: no usable rows (first problem: {bad[0].format()})")
    notes = [f"skipped {len(bad)} bad row(s); first: {bad[0].format()}"] if bad else []
    return EvalData(rows, SHAPE[fmt], f"{data} ({fmt})", skipped=len(bad), notes=notes)


def data_changes(run_path: Path, fingerprints: list[dict[str, Any]]) -> list[str]:
    """Notes on each data source whose content differs from what the run trained on
    (run.json's data fingerprints: a local file's sha256, else datasets' fingerprint,
    and the row count); none for a run without recorded fingerprints."""
    from runner.run.directory import RunDirectory

    run = RunDirectory(run_path)
    recorded = (run.read_run().get("data") or {}).get("sources") if run.run_json.is_file() else None
    if not recorded:
        return []
    then = {(r.get("role"), r.get("source")): r for r in recorded}
    notes = []
    for now in fingerprints:
        before = then.get((now.get("role"), now.get("source")))
        if before is None:
            continue
        key = "sha256" if before.get("sha256") and now.get("sha256") else "fingerprint"
        for what in (key, "rows_available"):
            if before.get(what) != now.get(what):
                notes.append(
                    f"the {now.get('role')} data {now.get('source')} changed since training "
                    f"({what} {_short(before.get(what))} then, {_short(now.get(what))} now): "
                    "the eval split and its loss are not the run's own"
                )
                break
    return notes


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) > 16 else text


def eval_loss_setup(loaded: Loaded, data: EvalData) -> LossSetup:
    """The loss setup `data` is scored with: the one training decides for rows of its
    shape (runner.expand.loss.loss_setup), with the run's tokenizer; conversations get
    the marked variant of the run's chat template (runner.expand.chat_template: the
    run's own when it trained on conversations)."""
    from runner.expand.chat_template import TemplateError, settle_chat_template
    from runner.expand.loss import assistant_only_loss, loss_setup

    settings = loaded.target.settings
    try:
        if assistant_only_loss(data.shape):
            settle_chat_template(
                loaded.tokenizer,
                settings.template,
                assistant_only=True,
                saved=loaded.tokenizer.chat_template,  # the run's (runner.after.load)
            )
        return loss_setup(settings, loaded.tokenizer, data.shape)
    except TemplateError as exc:
        raise AfterError(
            f"{exc} (evaluate instruction-shaped data, e.g. --format alpaca or prompt_completion)"
        ) from None


def loss_metrics(loaded: Loaded, data: EvalData) -> dict[str, Any]:
    """eval loss, perplexity and mean token accuracy as TRL's evaluation computes them."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from runner.data.rows import fitted
    from runner.data.truncation import require_fit, row_limit
    from runner.expand.placement import Placement
    from runner.expand.training import run_sft_kwargs

    settings = loaded.target.settings
    loss = eval_loss_setup(loaded, data)
    # Rendered, tokenized and fitted to max_length as the run prepared its rows
    # (data.overlong_rows), so on the run's eval split the loss is the run's own.
    origins = [f"{data.description}: row {i + 1}" for i in range(len(data.examples))]
    fit = fitted(settings, loaded.tokenizer, data.examples, origins, loaded.fmt, loss)
    require_fit({"eval": fit}, row_limit(settings), settings.overlong_rows)
    rows = Dataset.from_list(fit.rows)
    device = next(loaded.model.parameters()).device
    with tempfile.TemporaryDirectory(prefix="recipe-eval-") as scratch:
        kwargs = run_sft_kwargs(
            settings, Placement(cpu=device.type == "cpu"), loss, has_eval=True, tokenized=True
        )
        kwargs.update(output_dir=scratch, report_to=[], save_strategy="no", disable_tqdm=True)
        trainer = SFTTrainer(
            model=loaded.model,
            args=SFTConfig(**kwargs),
            train_dataset=rows,  # required by SFTTrainer; never trained on
            eval_dataset=rows,
            processing_class=loaded.tokenizer,
        )
        trainer.remove_callback(PrinterCallback)  # the caller reports the numbers
        metrics = trainer.evaluate()
    loss = float(metrics["eval_loss"])
    return {
        "loss": loss,
        "perplexity": math.exp(loss) if loss < 700 else math.inf,
        "mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
        "rows": len(rows),
    }


def prompt_and_reference(example: dict[str, Any]) -> tuple[Any, str, str] | None:
    """(prompt, input, reference) of an example, or None when it has no reference."""
    if "response" in example:
        return example["instruction"], example.get("input", ""), example["response"]
    messages = example.get("messages")
    if messages:
        last = max(i for i, turn in enumerate(messages) if turn["role"] == "assistant")
        if last > 0:
            return messages[:last], "", messages[last]["content"]
    return None


def is_exact(answer: str, reference: str) -> bool:
    return answer.strip() == reference.strip()


def short_answers(references: list[str]) -> bool:
    """Whether references are short enough for exact match to mean something."""
    return bool(references) and all(
        len(r.split()) <= SHORT_ANSWER_WORDS and "\n" not in r.strip() for r in references
    )


def reference_generations(
    loaded: Loaded, data: EvalData, count: int, max_new_tokens: int
) -> list[dict[str, Any]]:
    """Greedy answers to the first `count` examples that have a reference."""
    from runner.after.prompts import format_prompt
    from runner.generation import Sampling, generate

    chosen = []
    for example in data.examples:
        parts = prompt_and_reference(example)
        if parts is not None:
            chosen.append(parts)
        if len(chosen) >= count:
            break
    if not chosen:
        return []
    prompts = [format_prompt(loaded.fmt, loaded.tokenizer, p, i) for p, i, _ in chosen]
    completions = generate(
        loaded.model,
        loaded.tokenizer,
        prompts,
        Sampling(max_new_tokens=max_new_tokens),
        loaded.stop_ids,
    )
    return [
        {
            "prompt": prompt,
            "input": input_text,
            "reference": reference,
            "completion": completion.text,
            "exact_match": is_exact(completion.text, reference),
            "stopped": completion.stopped,
        }
        for (prompt, input_text, reference), completion in zip(chosen, completions, strict=True)
    ]


def summary(metrics: dict[str, Any], generations: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss metrics plus the generations' exact match (None where it means nothing)."""
    references = [g["reference"] for g in generations]
    hits = sum(g["exact_match"] for g in generations)
    return {
        **metrics,
        "generations": len(generations),
        "exact_match": hits / len(generations) if short_answers(references) else None,
        "exact_match_count": hits if short_answers(references) else None,
    }


def save_results(run_path: Path, record: dict[str, Any], generations: list[dict[str, Any]]) -> Path:
    """Write eval.json and eval-generations.jsonl into the run directory."""
    path = run_path / EVAL_JSON
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    with open(run_path / GENERATIONS, "w", encoding="utf-8") as out:
        for row in generations:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
