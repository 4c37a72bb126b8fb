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


def test_another_rank_or_a_corrupt_recipe_is_one_error(tmp_path):
    path = save_lora(toy(0), tmp_path / "lora.safetensors", {"step": 1})
    torch.manual_seed(0)
    other = ToyDenoiser(ToyModelConfig(dim=2, hidden=8, depth=1, time_dim=4, n_prompts=1))
    other = add_lora(other, other.lora_targets, rank=4)  # same keys, other shapes
    with pytest.raises(RdbenchError, match=r"shape \(2, .*the model \(4, .*another rank"):
        load_lora(other, path)
    recipe_file = tmp_path / "lora.safetensors.json"
    for bad in (b"{not json", b"\xff\xfe"):
        recipe_file.write_bytes(bad)
        with pytest.raises(RdbenchError, match="recipe .* is unreadable"):
            load_lora(toy(1), path)


def test_merged_adapters_are_refused_by_scale_and_disable():
    from baselines.core.lora import adapters_disabled, lora_layers, lora_scale

    model = toy(0)
    before = [p.clone() for p in model.parameters()]
    for m in lora_layers(model):
        m.merge()
    for context in (lora_scale(model, 0.5), adapters_disabled(model)):
        with pytest.raises(RdbenchError, match="merged into the base weights"), context:
            pass
    for m in lora_layers(model):
        m.unmerge()
    assert all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(before, model.parameters(), strict=True)
    )
