"""The toy testbed: exact mixture measures, rewards with known maximisers, the trained base."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.core.draft import DraftConfig, train_draft
from baselines.core.guidance import aig_predictor, base_predictor
from baselines.core.lora import adapters_disabled, add_lora, lora_scale
from baselines.core.sampling import predictor, sample
from baselines.toy.mixture import (
    Mixture,
    coverage,
    hypercube,
    mode_entropy,
    mode_kl,
    prompt_mixtures,
    ring,
)
from baselines.toy.model import ToyModelConfig, cached_base, toy_scheduler
from baselines.toy.reward import MultiPeakReward, PeakReward
from rdbench.errors import RdbenchError
from rdbench.metrics.fid import fid_from_features
from rdbench.metrics.manifold import precision_recall

STEPS = 20
N = 1500


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mixture_shapes_and_exact_sampling():
    m = hypercube(16, 8, std=0.25)
    assert m.means.shape == (16, 8) and len(torch.unique(m.means, dim=0)) == 16
    x = m.sample(8000, torch.Generator().manual_seed(0))
    share = m.mode_counts(x) / 8000
    assert np.abs(share - 1 / 16).max() < 0.02
    r = ring(8)
    assert torch.allclose(r.means.norm(dim=1), torch.full((8,), 2.0))
    assert len(prompt_mixtures(3)) == 3
    assert not torch.equal(prompt_mixtures(2)[0].means, prompt_mixtures(2)[1].means)
    with pytest.raises(RdbenchError):
        hypercube(20, 4)
    with pytest.raises(RdbenchError):
        Mixture(torch.zeros(2, 2), torch.tensor([0.3, 0.3]), 1.0)


def test_mode_measures_known_answers():
    w = np.full(16, 1 / 16)
    uniform, single = np.full(16, 10), np.eye(16)[3] * 160
    assert mode_entropy(uniform) == pytest.approx(math.log(16))
    assert coverage(uniform, w) == 1.0 and mode_kl(uniform, w) == pytest.approx(0.0, abs=1e-12)
    assert mode_entropy(single) == 0.0
    assert coverage(single, w) == 1 / 16
    assert mode_kl(single, w) == pytest.approx(math.log(16))


def test_peak_reward_maximiser_is_its_center():
    c = torch.tensor([0.7, -0.3, 1.0])
    r = PeakReward(c, width=0.5)
    assert float(r(c[None])) == 0.0
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 3
    assert (r(x) < 0).all()
    x.requires_grad_(True)
    for _ in range(300):  # gradient ascent finds the maximiser from anywhere
        (g,) = torch.autograd.grad(r(x).sum(), x)
        x = (x + 0.2 * g).detach().requires_grad_(True)
    assert torch.allclose(x, c.expand_as(x), atol=1e-3)


def test_multi_peak_reward_has_equal_maxima():
    centers = ring(4).means
    r = MultiPeakReward(centers, width=0.5, tau=0.1)
    at = r(centers)
    assert torch.allclose(at, at[0].expand(4), atol=1e-6)
    near = centers[:, None, :] + 0.05 * torch.randn(4, 20, 2, generator=torch.Generator())
    assert (r(near.reshape(-1, 2)).reshape(4, 20) < at[:, None]).all()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A small base trained once (about 4 s on one core) with a zero LoRA on top."""
    mix = hypercube(16, 8, std=0.25)
    model = cached_base(
        [mix],
        ToyModelConfig(hidden=64),
        tmp_path_factory.mktemp("toy"),
        steps=1500,
        batch_size=256,
        lr=5e-3,
        seed=0,
        progress=False,
    )
    torch.manual_seed(0)
    model = add_lora(model, model.lora_targets, rank=4)
    noise = torch.randn(N, 8, generator=torch.Generator().manual_seed(1))
    return mix, model, noise


def _sample(model, predict, noise):
    with torch.no_grad():
        return sample(predict, toy_scheduler(), noise, num_steps=STEPS)


def test_trained_base_matches_the_mixture(toy):
    mix, model, noise = toy
    x = _sample(model, base_predictor(model, model, None), noise)
    exact = mix.sample(N, torch.Generator().manual_seed(2))
    exact2 = mix.sample(N, torch.Generator().manual_seed(3))
    fid = fid_from_features(x.double(), exact.double())
    fid_exact = fid_from_features(exact2.double(), exact.double())
    trace = float(torch.cov(exact.T).trace())
    assert fid < 0.05 * trace  # small against the spread of the data (~8.5)
    assert fid_exact < fid  # and exact samples do better, as they should
    _, recall = precision_recall(exact, x)
    assert recall > 0.5
    share = mix.mode_counts(x) / N
    assert coverage(mix.mode_counts(x), mix.weights.numpy()) == 1.0
    assert np.abs(share - 1 / 16).max() < 0.035


def test_unregularised_draft_collapses_modes_and_scale_zero_is_base(toy):
    mix, model, noise = toy
    w = mix.weights.numpy()
    reward = PeakReward(mix.means[0] * 0.7, width=0.5)
    with adapters_disabled(model):
        base_x = _sample(model, predictor(model, None), noise)
    assert coverage(mix.mode_counts(base_x), w) == 1.0
    cfg = DraftConfig(steps=30, lr=3e-3, weight_decay=0.0, num_inference_steps=STEPS, k=1)
    train_draft(
        model,
        model,
        toy_scheduler(),
        reward,
        lambda g: (None, torch.randn(64, 8, generator=g)),
        cfg,
        progress=False,
    )
    tuned = _sample(model, predictor(model, None), noise)
    assert coverage(mix.mode_counts(tuned), w) <= 0.25
    assert float(torch.cov(tuned.T).trace()) < 0.2 * float(torch.cov(base_x.T).trace())
    assert reward(tuned).mean() > reward(base_x).mean() + 1.0
    # inference-time knobs on the trained adapter
    with lora_scale(model, 0.0):
        assert torch.equal(_sample(model, predictor(model, None), noise), base_x)
    g0 = _sample(model, aig_predictor(model, model, None, "base", STEPS), noise)
    assert torch.equal(g0, base_x)
    share = mix.mode_counts(g0) / N  # AIG g=0 samples the base: mixture proportions
    assert np.abs(share - mix.weights.numpy()).max() < 0.035
    g1 = _sample(model, aig_predictor(model, model, None, "draft", STEPS), noise)
    assert torch.equal(g1, tuned)
    mid = _sample(model, aig_predictor(model, model, None, "power:2", STEPS), noise)
    assert coverage(mix.mode_counts(mid), w) > coverage(mix.mode_counts(tuned), w)


def test_cached_base_is_written_atomically_and_a_damaged_cache_retrains(tmp_path, capsys):
    from baselines.toy.mixture import ring

    cfg = ToyModelConfig(dim=2, hidden=8, depth=1, time_dim=4, n_prompts=1)
    kw = {"steps": 3, "batch_size": 16, "progress": False}
    first = cached_base([ring()], cfg, tmp_path, **kw)
    [path] = tmp_path.glob("toy_base_*.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".json"]
    path.write_bytes(path.read_bytes()[:40])  # a write cut short
    again = cached_base([ring()], cfg, tmp_path, **kw)
    assert "retraining the toy base model" in capsys.readouterr().err
    state = {k: v.clone() for k, v in again.state_dict().items()}
    assert all(torch.equal(state[k], v) for k, v in first.state_dict().items())  # same seed
    loaded = cached_base([ring()], cfg, tmp_path, **kw)  # the rewritten file loads
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())


def test_on_mode_is_the_chi2_radius_and_sees_off_mode_samples():
    from baselines.toy.mixture import hypercube

    mix = hypercube()
    x = mix.sample(20000, torch.Generator().manual_seed(0))
    assert float(mix.on_mode(x).float().mean()) == pytest.approx(0.99, abs=0.003)
    # halfway between two vertices: nearest-mean assignment still names a mode; on_mode does not
    mid = (mix.means[:1] + mix.means[1:2]) / 2
    assert mix.assign(mid).item() in (0, 1) and not mix.on_mode(mid).item()
