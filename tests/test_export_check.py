"""What `recipe export --check` concludes from the answers it compared: F16 passes only
when every answer is token-identical; Q8_0 passes when every divergence is at a near-tie,
and a divergence that is not is flagged by name. Pure: answers as token ids."""

from __future__ import annotations

from runner.after.export_check import CheckReport, PromptCheck, greedy, report_lines


class Tokens:
    """Token ids as text: id n is the string "t<n>" (what report_lines decodes)."""

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids] if isinstance(ids, list) else f"t{ids}"

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids)


def answer(prompt: str, run: list[int], export: list[int], near_tie: bool | None = None):
    check = PromptCheck(prompt, run, export, True, True, True)
    if near_tie is not None:
        check.divergence = {
            "token": 1,
            "run": "t5",
            "export": "t6",
            "margin": 0.05 if near_tie else 4.0,
            "scale": 30.0,
            "near_tie": near_tie,
        }
    return check


def test_f16_passes_only_when_every_answer_is_token_identical():
    same = [answer("a", [1, 2, 9], [1, 2, 9]), answer("b", [3, 9], [3, 9])]
    assert CheckReport("transformers", "f16", 32, same).passed
    tie = [*same, answer("c", [1, 5, 9], [1, 6, 9], near_tie=True)]
    report = CheckReport("transformers", "f16", 32, tie)
    assert not report.passed and report.identical == 2
    lines = report_lines(report, Tokens())
    assert lines[0].startswith("check (transformers, greedy, up to 32 new tokens): 2/3")
    assert lines[-1] == "check FAILED (f16: 100% identical)"


def test_q8_0_passes_at_near_ties_and_flags_a_divergence_that_is_not_one():
    tie = answer("c", [1, 5, 9], [1, 6, 9], near_tie=True)
    report = CheckReport("llama.cpp", "q8_0", 32, [answer("a", [1, 9], [1, 9]), tie])
    assert report.passed
    assert report.record()["identical"] == 1 and report.record()["passed"] is True
    lines = report_lines(report, Tokens())
    assert any("(a near-tie)" in line for line in lines)
    assert lines[-1] == "check passed (q8_0: divergences only at near-ties)"

    wrong = answer("d", [1, 5, 9], [1, 6, 9], near_tie=False)
    report = CheckReport("llama.cpp", "q8_0", 32, [tie, wrong])
    assert not report.passed
    lines = report_lines(report, Tokens())
    assert any(
        "first divergence at token 1: run 't5', export 't6'; the run's margin 4.0 of 30.0 "
        "(NOT a near-tie)" in line
        for line in lines
    )
    assert lines[-1] == "check FAILED (q8_0: divergences only at near-ties)"


def test_a_stop_matches_only_when_both_stop_at_the_same_token():
    assert answer("a", [1, 9], [1, 9]).stop_matches
    longer = PromptCheck("b", [1, 9], [1, 2, 9], True, True, True)
    assert not longer.stop_matches
    never = PromptCheck("c", [1, 2], [1, 2], False, True, True)
    assert not never.stop_matches


def test_greedy_takes_the_largest_logit_and_stops_at_a_stop_id():
    import torch

    def step(ids):  # the next token is the previous one plus one
        logits = torch.zeros(10)
        logits[min(ids[-1] + 1, 9)] = 1.0
        return logits

    assert greedy(step, [4], stop_ids=[7], limit=10) == ([5, 6, 7], True)
    assert greedy(step, [1], stop_ids=[7], limit=3) == ([2, 3, 4], False)
