"""Noise draws of the DRaFT core: from a CPU generator onto the data's device (CUDA refuses
``torch.randn(..., generator=cpu_generator, device="cuda")``), same numbers on CPU."""

from __future__ import annotations

import pytest
import torch

import baselines.core.sampling as sampling
from baselines.core.draft import DraftConfig, draft_loss
from baselines.core.lora import add_lora
from baselines.toy.model import ToyDenoiser, ToyModelConfig, toy_scheduler
from baselines.toy.reward import PeakReward

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REAL_RANDN = torch.randn


def strict_randn(calls: list[tuple[torch.device, torch.device]]):
    """torch.randn that, like CUDA, refuses a generator on another device than the draw."""

    def randn(*args, generator=None, device=None, **kw):
        if generator is not None:
            where = torch.device(device) if device is not None else torch.device("cpu")
            calls.append((generator.device, where))
            if where != generator.device:
                raise RuntimeError(f"generator on {generator.device}, draw on {where}")
        return REAL_RANDN(*args, generator=generator, device=device, **kw)

    return randn


def test_randn_draws_on_the_generator_device_then_moves(monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch, "randn", strict_randn(calls))
    like = torch.empty(0, dtype=torch.float64, device="meta")  # a device the generator is not on
    out = sampling.randn((2, 3), torch.Generator().manual_seed(0), like=like)
    assert out.device.type == "meta" and out.dtype == torch.float64
    assert calls == [(torch.device("cpu"), torch.device("cpu"))]
    cpu = sampling.randn((2, 3), torch.Generator().manual_seed(0), like=torch.empty(0))
    assert torch.equal(cpu, REAL_RANDN((2, 3), generator=torch.Generator().manual_seed(0)))


def toy() -> ToyDenoiser:
    torch.manual_seed(0)
    model = ToyDenoiser(ToyModelConfig(dim=2, hidden=16, depth=1, time_dim=8, n_prompts=1))
    return add_lora(model, model.lora_targets, rank=4)


def test_eta_and_lv_draws_go_through_the_generator_device(monkeypatch):
    model, noise = toy(), REAL_RANDN(4, 2, generator=torch.Generator().manual_seed(1))
    seen: list = []
    original = sampling.randn

    def spy(shape, generator, *, like):
        seen.append(tuple(shape))
        return original(shape, generator, like=like)

    monkeypatch.setattr(sampling, "randn", spy)  # draft draws through sampling.shard_randn
    calls: list = []
    monkeypatch.setattr(torch, "randn", strict_randn(calls))
    config = DraftConfig(num_inference_steps=3, lv=2, eta=0.5)
    loss, _ = draft_loss(
        model,
        model,
        toy_scheduler(),
        PeakReward(torch.tensor([1.0, 0.0])),
        None,
        noise,
        config,
        torch.Generator().manual_seed(3),
    )
    assert torch.isfinite(loss)
    # one (steps, *shape) draw for DDIM eta > 0, then per LV repeat the re-noise and the noise
    # of its final DDIM step (the sampler's own last step, eta included)
    assert seen == [(3, 4, 2)] + [(4, 2)] * 4
    assert calls and all(g == d for g, d in calls)


def test_eta_sampling_numbers_unchanged_on_cpu():
    """The generator path equals passing the same draws as ``step_noise`` explicitly."""
    predict = sampling.predictor(toy(), None)
    noise = REAL_RANDN(4, 2, generator=torch.Generator().manual_seed(1))
    run = {"num_steps": 3, "eta": 1.0}
    with torch.no_grad():
        drawn = sampling.sample(
            predict, toy_scheduler(), noise, generator=torch.Generator().manual_seed(5), **run
        )
        given = REAL_RANDN((3, 4, 2), generator=torch.Generator().manual_seed(5))
        explicit = sampling.sample(predict, toy_scheduler(), noise, step_noise=given, **run)
    assert torch.equal(drawn, explicit)
