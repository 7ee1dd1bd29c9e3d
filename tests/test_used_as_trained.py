"""A finished run is used as it trained: the chat template `recipe infer/chat/eval` put
on the run's tokenizer is the one training rendered with (runner.expand.chat_template),
and `recipe eval` scores exactly the tokens training trained, with the loss setup
training used (runner.expand.loss)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import settings_of

from runner.after.evaluate import eval_data, eval_loss_setup
from runner.after.load import Loaded, load_tokenizer
from runner.after.prompts import prompt_format
from runner.after.target import Target
from runner.data.rows import fit_data, fitted
from runner.data.templates import PromptFormat, render_prompt
from runner.expand.chat_template import chat_template_text, has_generation_markers
from runner.expand.placement import Placement
from runner.expand.tokenizer import load_tokenizer as load_training_tokenizer
from runner.expand.training import run_sft_kwargs
from runner.run.template_copy import save_chat_template

pytestmark = pytest.mark.fixtures
CPU = Placement(cpu=True)
LOSS_KWARGS = ("eos_token", "assistant_only_loss", "completion_only_loss")


def rows_file(path: Path, fmt: str) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(12):
            if fmt == "messages":
                row = {"messages": [{"role": "user", "content": f"shout word {i}"},
                                    {"role": "assistant", "content": f"WORD {i}"}]}  # fmt: skip
            else:
                row = {"prompt": f"shout word {i}", "completion": f"WORD {i}"}
            out.write(json.dumps(row) + "\n")
    return path


def recipe(fixtures: Path, tmp_path: Path, fmt: str, template: str = "chat"):
    rows = rows_file(tmp_path / f"{fmt}.jsonl", fmt)
    return settings_of(
        "demo-uppercase",
        f"model.tokenizer={fixtures / 'tokenizers' / 'tinyllama-chat'}",
        f"data.template={template}",
        f"data.train=[{{source: {rows}, format: {fmt}}}]",
        f"data.eval=[{{source: {rows}, format: {fmt}}}]",
        f"output_dir={tmp_path / 'run'}",
    )


def trained_run(settings, tmp_path: Path):
    """What training leaves behind for the after-training commands: its tokenizer in
    final/ and the copy of its chat template (as runner.train.save_final writes them),
    with the data it trained on."""
    tokenizer = load_training_tokenizer(settings)
    data = fit_data(settings, tokenizer)
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    tokenizer.save_pretrained(run / "final")
    save_chat_template(run, tokenizer, settings.template)
    target = Target(path=run, settings=settings, weights=str(run / "final"), adapter=False,
                    base=None)  # fmt: skip
    return tokenizer, data, target


@pytest.mark.parametrize("fmt", ["messages", "prompt_completion"])
def test_infer_renders_with_the_chat_template_training_rendered_with(
    shared_fixtures, tmp_path, fmt
):
    settings = recipe(shared_fixtures, tmp_path, fmt)
    trained, _, target = trained_run(settings, tmp_path)
    used = load_tokenizer(target)
    assert used.chat_template == trained.chat_template
    # conversations trained assistant turns only: through the marked variant
    assert has_generation_markers(used.chat_template) is (fmt == "messages")
    prompt = [{"role": "user", "content": "shout word 3"}]
    assert render_prompt(prompt_format(settings, used, target.path), used, prompt) == (
        render_prompt(PromptFormat.of(settings), trained, prompt)
    )


def test_a_template_file_changed_after_training_does_not_change_the_run(shared_fixtures, tmp_path):
    jinja = tmp_path / "chat.jinja"
    own = shared_fixtures / "tokenizers" / "tinyllama-chat" / "chat_template.jinja"
    jinja.write_text(own.read_text(encoding="utf-8"), encoding="utf-8")
    settings = recipe(shared_fixtures, tmp_path, "prompt_completion", template=str(jinja))
    trained, _, target = trained_run(settings, tmp_path)
    jinja.write_text("{{ 'edited after training' }}")
    assert load_tokenizer(target).chat_template == trained.chat_template


@pytest.mark.parametrize("fmt", ["messages", "prompt_completion"])
def test_eval_scores_the_tokens_training_trained_with_its_loss_setup(
    shared_fixtures, tmp_path, fmt
):
    settings = recipe(shared_fixtures, tmp_path, fmt)
    _, data, target = trained_run(settings, tmp_path)
    tokenizer = load_tokenizer(target)
    loaded = Loaded(target, None, tokenizer, prompt_format(settings, tokenizer, target.path), [],
                    False)  # fmt: skip
    rows = eval_data(target, None, None)  # the run's eval split
    loss = eval_loss_setup(loaded, rows)
    assert loss == data.loss
    assert loss.assistant_only is (fmt == "messages")
    assert loss.completion_only is (fmt != "messages")
    trained = run_sft_kwargs(settings, CPU, data.loss, has_eval=True, tokenized=data.tokenized)
    scored = run_sft_kwargs(settings, CPU, loss, has_eval=True, tokenized=True)
    assert {k: scored.get(k) for k in LOSS_KWARGS} == {k: trained.get(k) for k in LOSS_KWARGS}
    fit = fitted(settings, tokenizer, rows.examples, ["row"] * len(rows.examples), loaded.fmt,
                 loss)  # fmt: skip
    assert [r["input_ids"] for r in fit.rows] == data.eval["input_ids"]
    column = loss.mask_column
    assert [r[column] for r in fit.rows] == data.eval[column]


def test_eval_of_conversations_on_an_instruction_run_gets_the_marked_template(
    shared_fixtures, tmp_path
):
    settings = recipe(shared_fixtures, tmp_path, "prompt_completion")
    trained, _, target = trained_run(settings, tmp_path)
    assert not has_generation_markers(trained.chat_template)
    tokenizer = load_tokenizer(target)
    loaded = Loaded(target, None, tokenizer, prompt_format(settings, tokenizer, target.path), [],
                    False)  # fmt: skip
    messages = rows_file(tmp_path / "conversations.jsonl", "messages")
    loss = eval_loss_setup(loaded, eval_data(target, str(messages), "messages"))
    assert loss.assistant_only and has_generation_markers(tokenizer.chat_template)


def test_deciding_the_marked_template_leaves_the_tokenizer_as_it_was(shared_fixtures, tmp_path):
    settings = recipe(shared_fixtures, tmp_path, "prompt_completion")
    tokenizer = load_training_tokenizer(settings)
    own = tokenizer.chat_template
    marked = chat_template_text(tokenizer, settings.template, assistant_only=True)
    assert has_generation_markers(marked) and tokenizer.chat_template == own
