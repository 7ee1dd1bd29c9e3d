"""The GPU benchmark script runs end to end on CPU (tiny model), so it is ready for a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu_and_writes_results_with_estimates(tmp_path):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("trl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_memory.py"),
            "--cpu-smoke",
            "--only",
            "tinyllama-qlora-3070",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "gpu_memory.cpu-smoke.json").read_text())
    assert results["meta"]["smoke"] is True
    (point,) = results["points"]
    assert point["point"] == "tinyllama-qlora-3070"
    assert point["method"] == "qlora" and point["optim"] == "paged_adamw_8bit"
    assert point["estimate"]["reserved_bytes"] > 0
    assert point["oom"] is False and point["tokens_per_s"] > 0
    assert "tinyllama-qlora-3070" in (tmp_path / "gpu_memory.cpu-smoke.log").read_text()


def test_gpu_benchmark_rejects_an_unknown_point(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_memory.py"),
            "--cpu-smoke",
            "--only",
            "no-such-point",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "unknown point(s) no-such-point" in proc.stderr
