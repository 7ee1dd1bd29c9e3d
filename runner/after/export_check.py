"""`recipe export --check`: the exported file answers as the run does, on this machine.

The same prompts (the run's held-out prompts, then fixed chat prompts), rendered and
tokenized exactly as `recipe infer` renders them, go greedily to the run as it trained
(base + adapter, QLoRA on its 4-bit base; or the full model) and to the exported file:
in llama.cpp through llama-cpp-python when it is installed (the `llama-cpp` extra), else
in transformers re-loading the GGUF file. Per prompt: token-identical or not, where the
first divergence is and how close the run's own choice was there (a near-tie is a
margin under NEAR_TIE of the logits' scale), whether both stopped at the same place, and
whether the engine's own tokenizer turns the prompt text into the run's ids.

F16 passes only at 100% identical. Q8_0 rounds every weight, so it may part from the
run where two tokens nearly tie: it passes when every divergence is at a near-tie.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.after.target import AfterError, Target

if TYPE_CHECKING:
    from runner.after.load import Loaded

LLAMA_CPP_EXTRA = "pip install 'recipe-runner[llama-cpp]'"
ENGINES = ("auto", "llama.cpp", "transformers")
CHECK_PROMPTS = (
    "What is the capital of France?",
    "Name a colour.",
    "Write one sentence about the sea.",
    "What is 12 plus 30?",
    "Say hello in Spanish.",
    "List three fruits.",
    "Who wrote Hamlet?",
    "Give me a word that rhymes with cat.",
    "What day comes after Monday?",
    "Translate 'thank you' into French.",
)
NEAR_TIE = 0.01  # a margin under 1% of the largest logit there: rounding can flip it


@dataclass
class PromptCheck:
    """One prompt's comparison; token ids include the stop token when one was reached."""

    prompt: str
    run: list[int]
    export: list[int]
    run_stopped: bool
    export_stopped: bool
    prompt_tokens_match: bool | None  # the engine's tokenizer gives the run's prompt ids
    divergence: dict[str, Any] | None = None

    @property
    def identical(self) -> bool:
        return self.run == self.export

    @property
    def stop_matches(self) -> bool:
        return self.run_stopped == self.export_stopped and len(self.run) == len(self.export)


def choose_engine(requested: str) -> str:
    """llama.cpp when llama-cpp-python is installed (or asked for), else transformers."""
    from runner.lint.rules.extras import installed

    here = installed("llama_cpp")
    if requested == "llama.cpp" and not here:
        raise AfterError(
            "--engine llama.cpp needs llama-cpp-python, which is not installed here; "
            f"install it with `{LLAMA_CPP_EXTRA}` (it compiles llama.cpp: several minutes), "
            "or check with --engine transformers"
        )
    if requested == "auto":
        return "llama.cpp" if here else "transformers"
    return requested


def check_prompts(target: Target, count: int) -> list[tuple[Any, str]]:
    """(prompt, input) pairs: up to half of them the run's held-out prompts (what it
    learnt), the rest fixed chat prompts (what it should still do)."""
    from runner.after.evaluate import prompt_and_reference
    from runner.data.rows import load_examples
    from runner.errors import UserError

    chosen: list[tuple[Any, str]] = []
    if target.settings is not None and target.settings.has_eval_data:
        try:
            examples = load_examples(target.settings).eval
        except UserError:
            examples = []  # the data moved: the fixed prompts still check the file
        for example in examples:
            parts = prompt_and_reference(example)
            if parts is not None and len(chosen) < (count + 1) // 2:
                chosen.append((parts[0], parts[1]))
    for prompt in CHECK_PROMPTS:
        if len(chosen) < count:
            chosen.append((prompt, ""))
    return chosen


def greedy(step: Any, prompt: list[int], stop_ids: list[int], limit: int) -> tuple[list[int], bool]:
    """Greedy ids from `step(ids) -> logits of the next token`, up to and including the
    first stop id; (ids, stopped)."""
    out: list[int] = []
    for _ in range(limit):
        token = int(step(prompt + out).argmax())
        out.append(token)
        if token in stop_ids:
            return out, True
    return out, False


def transformers_step(model: Any) -> Any:
    """Next-token logits of a transformers model, with its KV cache (one prompt at a time)."""
    import torch

    state: dict[str, Any] = {"ids": [], "cache": None}

    def step(ids: list[int]) -> Any:
        known = state["ids"]
        if known and len(ids) > len(known) and ids[: len(known)] == known:
            fresh, cache = ids[len(known) :], state["cache"]  # only the new tokens
        else:
            fresh, cache = ids, None
        with torch.no_grad():
            out = model(input_ids=torch.tensor([fresh]), past_key_values=cache, use_cache=True)
        state.update(ids=list(ids), cache=out.past_key_values)
        return out.logits[0, -1].float()

    return step


def llama_cpp_step(llm: Any) -> Any:
    """Next-token logits from llama.cpp (a llama_cpp.Llama made with logits_all=True)."""
    import numpy as np

    def step(ids: list[int]) -> Any:
        known = llm.input_ids[: llm.n_tokens].tolist()
        if not known or len(ids) <= len(known) or ids[: len(known)] != known:
            llm.reset()
            known = []
        llm.eval(ids[len(known) :])
        return np.asarray(llm.scores[llm.n_tokens - 1])

    return step


def divergence(
    reference: Any, prompt: list[int], run: list[int], export: list[int], tokenizer: Any
) -> dict[str, Any] | None:
    """Where two greedy answers part: the position, both tokens, and the run's margin
    between them at that point against the scale of its logits."""
    index = next((i for i, (a, b) in enumerate(zip(run, export, strict=False)) if a != b), None)
    if index is None:
        return None  # one is a prefix of the other: they differ in where they stop
    logits = transformers_step(reference)(prompt + run[:index])
    margin = float(logits[run[index]] - logits[export[index]])
    scale = float(logits.abs().max())
    return {
        "token": index,
        "run": tokenizer.convert_ids_to_tokens(run[index]),
        "export": tokenizer.convert_ids_to_tokens(export[index]),
        "margin": round(margin, 4),
        "scale": round(scale, 2),
        "near_tie": margin <= NEAR_TIE * scale,
    }


@dataclass
class CheckReport:
    engine: str
    kind: str
    max_new_tokens: int
    prompts: list[PromptCheck]

    @property
    def identical(self) -> int:
        return sum(p.identical for p in self.prompts)

    @property
    def passed(self) -> bool:
        if self.kind == "f16":
            return self.identical == len(self.prompts)
        return all(p.identical or (p.divergence or {}).get("near_tie") for p in self.prompts)

    def record(self) -> dict[str, Any]:
        """What export.json keeps of the check."""
        return {
            "engine": self.engine,
            "max_new_tokens": self.max_new_tokens,
            "identical": self.identical,
            "prompts": len(self.prompts),
            "stops_match": sum(p.stop_matches for p in self.prompts),
            "passed": self.passed,
            "results": [
                {**asdict(p), "identical": p.identical, "stop_matches": p.stop_matches}
                for p in self.prompts
            ],
        }


def run_check(
    target: Target, gguf: Path, kind: str, engine: str, count: int, max_new_tokens: int
) -> CheckReport:
    """Greedy answers of the run as trained and of the exported file, compared."""
    from runner.after.load import as_trained, load_target
    from runner.after.prompts import format_prompt

    loaded = as_trained(load_target(target, device="cpu"))
    rows = check_prompts(target, count)
    prompts = [format_prompt(loaded.fmt, loaded.tokenizer, p, i) for p, i in rows]
    texts = [_prompt_text(loaded, p, i) for p, i in rows]
    wanted = [
        greedy(transformers_step(loaded.model), p, loaded.stop_ids, max_new_tokens) for p in prompts
    ]
    got, tokenized = _export_answers(gguf, engine, loaded, prompts, texts, max_new_tokens)
    checks = []
    for row, prompt, (run, run_stop), (out, out_stop), match in zip(
        rows, prompts, wanted, got, tokenized, strict=True
    ):
        check = PromptCheck(_label(row[0]), run, out, run_stop, out_stop, match)
        if not check.identical:
            check.divergence = divergence(loaded.model, prompt, run, out, loaded.tokenizer)
        checks.append(check)
    return CheckReport(engine, kind, max_new_tokens, checks)


def _prompt_text(loaded: Loaded, prompt: Any, input_text: str) -> str:
    from runner.data.templates import render_prompt

    return render_prompt(loaded.fmt, loaded.tokenizer, prompt, input_text)


def _label(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return str(prompt[-1].get("content", "")) if prompt else ""


def _export_answers(
    gguf: Path, engine: str, loaded: Loaded, prompts: list[list[int]], texts: list[str], limit: int
) -> tuple[list[tuple[list[int], bool]], list[bool | None]]:
    """The exported file's greedy answers to the same ids, and whether the engine's own
    tokenizer gives those ids for the prompt text."""
    add_special = loaded.fmt.template.is_text
    if engine == "llama.cpp":
        from llama_cpp import Llama

        width = max(len(p) for p in prompts) + limit + 8
        llm = Llama(str(gguf), n_ctx=width, logits_all=True, verbose=False, seed=0)
        try:
            step = llama_cpp_step(llm)
            answers = [greedy(step, p, loaded.stop_ids, limit) for p in prompts]
            tokenized = [
                llm.tokenize(t.encode("utf-8"), add_bos=add_special, special=True) == p
                for t, p in zip(texts, prompts, strict=True)
            ]
        finally:
            llm.close()  # now, not in a destructor at interpreter exit
        return answers, tokenized
    from transformers import AutoTokenizer

    from runner.expand.model import load_gguf_model

    model = load_gguf_model(gguf)
    model.eval()
    answers = [greedy(transformers_step(model), p, loaded.stop_ids, limit) for p in prompts]
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenized = [
        tokenizer(t, add_special_tokens=add_special)["input_ids"] == p
        for t, p in zip(texts, prompts, strict=True)
    ]
    return answers, tokenized


def report_lines(report: CheckReport, tokenizer: Any) -> list[str]:
    """What `recipe export --check` prints."""
    total = len(report.prompts)
    tokenized = [p.prompt_tokens_match for p in report.prompts if p.prompt_tokens_match is not None]
    lines = [
        f"check ({report.engine}, greedy, up to {report.max_new_tokens} new tokens): "
        f"{report.identical}/{total} token-identical "
        f"({100 * report.identical / total:.0f}%), "
        f"{sum(p.stop_matches for p in report.prompts)}/{total} stops match, "
        f"prompt tokenized identically {sum(tokenized)}/{len(tokenized)}"
    ]
    for number, p in enumerate(report.prompts, start=1):
        answer = tokenizer.decode(p.export, skip_special_tokens=True).strip().replace("\n", " ")
        state = "same" if p.identical else "DIFFERS"
        stop = "stopped" if p.export_stopped else "no stop"
        lines.append(
            f"  {number:2d} {state:7s} {_short(p.prompt)!r} -> {_short(answer)!r} ({stop})"
        )
        if p.divergence:
            d = p.divergence
            tie = "a near-tie" if d["near_tie"] else "NOT a near-tie"
            lines.append(
                f"     first divergence at token {d['token']}: run {d['run']!r}, export "
                f"{d['export']!r}; the run's margin {d['margin']} of {d['scale']} ({tie})"
            )
    differ = [n for n, p in enumerate(report.prompts, start=1) if p.prompt_tokens_match is False]
    if differ:
        lines.append(
            f"note: {report.engine}'s own tokenizer splits the text of prompt(s) "
            f"{', '.join(map(str, differ))} into other ids than the run did (the answers above "
            "were given the run's ids); see docs/export.md, 'Tokenization'"
        )
    verdict = "passed" if report.passed else "FAILED"
    need = "100% identical" if report.kind == "f16" else "divergences only at near-ties"
    lines.append(f"check {verdict} ({report.kind}: {need})")
    return lines


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
