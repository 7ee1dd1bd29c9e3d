"""After the shipped demo recipe's run (real `recipe run`, on CPU): `recipe infer` answers
the held-out rows the demo scores, as the run itself scored them; `recipe eval`
reproduces its eval loss; a full fine-tune needs no merge."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runner import RECIPES_DIR

pytestmark = pytest.mark.slow

HELD_OUT = RECIPES_DIR / "data" / "uppercase-eval.jsonl"


def recipe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["recipe", *args], cwd=cwd, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def demo_dir(demo_run) -> Path:
    """The shipped demo's run directory (trained once per session, see conftest)."""
    return demo_run[0]


def test_infer_answers_the_held_out_rows_the_demo_scores(demo_dir, tmp_path):
    out = tmp_path / "answers.jsonl"
    done = recipe_cli(
        "infer", str(demo_dir), "--file", str(HELD_OUT), "--max-new-tokens", "12",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    correct = sum(r["generation"].strip() == r["completion"].strip() for r in rows)

    scored = json.loads((demo_dir / "run.json").read_text())["exact_match"]
    assert len(rows) == scored["after"]["total"]
    # The same prompts, the same greedy decoding, the same stop: the same answers.
    assert abs(correct - scored["after"]["correct"]) <= 2
    assert correct / len(rows) >= 0.5 > scored["before"]["accuracy"]
    by_prompt = {r["prompt"]: r["generation"] for r in rows}
    for sample in scored["after"]["samples"]:
        assert by_prompt[sample["prompt"]] == sample["got"]


def test_infer_prints_the_answer_to_one_prompt(demo_dir, tmp_path):
    done = recipe_cli("infer", str(demo_dir), "--prompt", "Uppercase: abc\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().isupper()


def test_eval_reproduces_the_demo_eval_loss(demo_dir, tmp_path):
    done = recipe_cli("eval", str(demo_dir), "-n", "20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((demo_dir / "eval.json").read_text())
    trained = json.loads((demo_dir / "run.json").read_text())["metrics"]["eval_loss"]
    assert record["loss"] == pytest.approx(trained, rel=1e-4)
    assert record["rows"] == 200 and record["exact_match"] is not None
    assert "exact match" in done.stdout


def test_a_full_finetune_needs_no_merge_and_says_which_model_to_use(demo_dir, tmp_path):
    done = recipe_cli("merge", str(demo_dir), cwd=tmp_path)
    assert done.returncode == 1
    assert "full fine-tuning run" in done.stderr and "nothing to merge" in done.stderr
    assert str(demo_dir / "final") in done.stderr
    assert "Traceback" not in done.stderr
    assert not (demo_dir / "merged").exists()
