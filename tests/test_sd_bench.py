"""The GPU smoke benchmark runs end to end on the CPU (tiny sizes) and reports every figure."""

from __future__ import annotations

import importlib.util
import json

import torch
from conftest import REPO


def test_gpu_smoke_runs_on_the_cpu_and_writes_its_figures(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_smoke", REPO / "benchmarks" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        assert module.main(["--cpu", "--quick", "--json", str(tmp_path / "f.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures["size"] == "tiny" and figures["device"] == "cpu"
    for key in ("draft_ckpt", "draft_nockpt"):
        assert figures[key]["steps_per_s"] > 0 and figures[key]["peak_gib"] is None
    s = figures["sampling"]
    assert s["aig_batched_ratio"] == s["aig_batched"] / s["plain"] > 0
    out = capsys.readouterr().out
    assert "AIG batched" in out and "steps/s" in out
