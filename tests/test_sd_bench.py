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
    for key in ("plain_double", "base", "aig_rows", "aig_peft", "aig_two_pass"):
        assert s[f"{key}_ratio"] == s[key] / s["plain"] > 0
    # float32 on the CPU: each one-forward mixing samples what two passes sample
    assert set(s["max_abs_diff"]) == {"rows", "peft", "plain_batch"}
    for diff in s["max_abs_diff"].values():
        assert 0 <= diff["final"] < 1e-4 and 0 <= diff["step"] < 1e-4
    ops = s["ops"]
    assert ops["rows"]["host_tensors"] == ops["plain"]["host_tensors"]
    assert ops["peft"]["host_tensors"] > ops["rows"]["host_tensors"]
    assert ops["plain"]["total"] < ops["rows"]["total"] < ops["two-pass"]["total"]
    out = capsys.readouterr().out
    assert "AIG, one forward, row-scaled LoRA" in out and "steps/s" in out
