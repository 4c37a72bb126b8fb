"""LoRA files: written atomically (a new file replaces the old one, never rewritten in place),
and a truncated file is one RdbenchError."""

from __future__ import annotations

import os

import pytest
import torch

from baselines.core.lora import add_lora, load_lora, lora_parameters, save_lora
from baselines.toy.model import ToyDenoiser, ToyModelConfig
from rdbench.errors import RdbenchError


def toy(seed: int) -> ToyDenoiser:
    torch.manual_seed(seed)
    model = ToyDenoiser(ToyModelConfig(dim=2, hidden=8, depth=1, time_dim=4, n_prompts=1))
    model = add_lora(model, model.lora_targets, rank=2)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_()
    return model


def test_save_replaces_the_file_and_a_truncated_file_is_one_error(tmp_path):
    path = save_lora(toy(0), tmp_path / "lora.safetensors", {"step": 1})
    keep = tmp_path / "old.safetensors"
    os.link(path, keep)  # a reader holding the old file (same inode) must keep reading it
    old = keep.read_bytes()
    save_lora(toy(1), path, {"step": 2})
    assert keep.read_bytes() == old and path.read_bytes() != old
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lora.safetensors",
        "lora.safetensors.json",
        "old.safetensors",
    ]  # no temporary files left
    model = toy(2)
    assert load_lora(model, path) == {"step": 2}
    assert all(
        torch.equal(a, b)
        for a, b in zip(lora_parameters(model), lora_parameters(toy(1)), strict=True)
    )
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RdbenchError, match="unreadable.*truncated"):
        load_lora(model, path)


def test_weights_go_through_the_atomic_writer(tmp_path, monkeypatch):
    import baselines.core.lora as lora
    from rdbench.hub import atomic_write_bytes

    written = []

    def spy(path, data):
        written.append(os.fspath(path))
        return atomic_write_bytes(path, data)

    monkeypatch.setattr(lora, "atomic_write_bytes", spy)
    path = save_lora(toy(0), tmp_path / "lora.safetensors", {})
    assert written == [str(path), str(path) + ".json"]
