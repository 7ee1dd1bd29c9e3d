"""Canonical examples as TRL's training rows. Imports nothing that reads data: a row
becomes a TRL row the same way whether it came from a file, the hub or `recipe eval`.

- text templates (alpaca, plain): {"prompt": text, "completion": response + end-of-turn}
  (prompt-completion, so only the completion is trained);
- the chat template: {"prompt": [turns], "completion": [assistant turn]} (conversational
  prompt-completion), or {"messages": [...]} when any source is multi-turn (then only
  assistant turns are trained, through a training template with generation markers);
- text data: {"text": ...} (every token trained).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.data.templates import (
    PromptFormat,
    chat_messages,
    render_text_prompt,
    with_system_prompt,
)
from runner.expand.loss import LossSetup

if TYPE_CHECKING:
    from datasets import Dataset


def trl_row(
    example: dict[str, Any], fmt: PromptFormat, end_of_turn: str, as_messages: bool
) -> dict[str, Any]:
    """One canonical example as a TRL training row (see the module docstring). A row that
    goes through a chat template carries the template's variables (TRL's
    `chat_template_kwargs`), so TRL renders it as the runner does."""
    system = fmt.system_prompt
    if "text" in example:
        return {"text": example["text"]}
    if fmt.template.is_text and "messages" not in example:
        prompt = render_text_prompt(fmt.template, example["instruction"], example["input"])
        return {"prompt": prompt, "completion": example["response"] + end_of_turn}
    variables = {"chat_template_kwargs": fmt.variables} if fmt.variables else {}
    if "messages" in example:
        return {"messages": with_system_prompt(example["messages"], system), **variables}
    prompt = chat_messages(example["instruction"], example["input"], system)
    answer = [{"role": "assistant", "content": example["response"]}]
    if as_messages:
        return {"messages": prompt + answer, **variables}
    return {"prompt": prompt, "completion": answer, **variables}


def to_trl_rows(examples: list[dict[str, Any]], fmt: PromptFormat, loss: LossSetup) -> Dataset:
    """Render canonical examples into a Dataset of TRL rows."""
    from datasets import Dataset

    rows = [trl_row(e, fmt, loss.end_of_turn, loss.assistant_only) for e in examples]
    return Dataset.from_list(rows)
