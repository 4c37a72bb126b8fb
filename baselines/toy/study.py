"""The toy reward-diversity study: Lemma 1 in practice and the three regulariser frontiers.

Steps (all seeded; evaluation noise is shared by every method, so comparisons are paired):

1. A 16-mode Gaussian mixture in 8-D; the base MLP is trained on it (cached in ``out``).
2. DRaFT-K without regularisation from a zero-initialised LoRA; every ``lemma_every`` steps
   the mode coverage, mode entropy, trace of the sample covariance and mean reward are
   measured (Lemma 1: coverage -> one mode, covariance -> 0).
3. Frontiers on the same footing: KL lambda sweep (one adapter per lambda), LoRA scale alpha'
   and AIG schedules on the unregularised adapter of step 2, plus a DRaFT-LV adapter.
4. Every point: mean reward, exact mode measures, and rdbench's FID, precision, recall, SCD
   and Vendi on the raw 8-D samples against the base model's samples, with 95% intervals
   (percentile bootstrap for the reward and mode measures, half-sample for the set metrics,
   :func:`rdbench.metrics.bootstrap.half_sample_ci`); written as rdbench result files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from baselines.core.draft import DraftConfig, train_draft
from baselines.core.guidance import aig_predictor, base_predictor
from baselines.core.lora import ADAPTER, add_lora, lora_scale, save_lora
from baselines.core.sampling import predictor, sample
from baselines.core.schedules import schedule_values
from baselines.toy.mixture import Mixture, coverage, hypercube, mode_entropy, mode_kl, ring
from baselines.toy.model import ToyDenoiser, ToyModelConfig, cached_base, toy_scheduler
from baselines.toy.reward import PeakReward
from rdbench.frontier import frontier_area, is_pareto, reference_point
from rdbench.metrics.bootstrap import bootstrap_ci, half_sample_ci, half_sample_intervals, mean_ci
from rdbench.metrics.fid import fid_from_features
from rdbench.metrics.manifold import precision_recall
from rdbench.metrics.scd import spectral_covariance_distance
from rdbench.metrics.vendi import vendi_score
from rdbench.results import (
    Extractor,
    Method,
    MetricValue,
    Provenance,
    Result,
    Setup,
    metric_spec,
)

FEATURES = "raw"  # metrics on the raw 8-D samples: the "feature extractor" is the identity
DIVERSITY_AXES = ("mode_entropy", "fid/raw", "recall/raw")  # fid: lower is better


@dataclass(frozen=True)
class StudyConfig:
    seed: int = 0
    dim: int = 8
    n_modes: int = 16
    mode_std: float = 0.25
    hidden: int = 128
    base_steps: int = 6000
    base_batch: int = 512
    base_lr: float = 2e-3
    num_inference_steps: int = 20
    n_eval: int = 2000
    train_steps: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    lora_rank: int = 8
    lemma_every: int = 5
    lemma_n: int = 1000
    lv: int = 2
    kl_lambdas: tuple[float, ...] = (0.3, 0.45, 0.5, 0.6, 0.8, 1.0, 2.0)
    lora_scales: tuple[float, ...] = (0.05, 0.1, 0.15, 0.25, 0.5, 0.75)
    aig_schedules: tuple[str, ...] = (
        "power:2",
        "power:4",
        "power:8",
        "power:16",
        "step:0.8",
        "step:0.9",
        "sigmoid:20,0.85",
    )
    n_boot: int = 200
    n_boot_knn: int = 20

    @classmethod
    def quick(cls, seed: int = 0) -> StudyConfig:
        return cls(
            seed=seed,
            hidden=64,
            base_steps=800,
            base_batch=256,
            base_lr=5e-3,
            n_eval=400,
            train_steps=30,
            lr=3e-3,
            num_inference_steps=20,
            lemma_every=10,
            lemma_n=300,
            kl_lambdas=(0.1, 1.0),
            lora_scales=(0.5,),
            aig_schedules=("power:2", "step:0.5"),
            n_boot=50,
            n_boot_knn=10,
        )


@dataclass
class Point:
    """One evaluated sampler: method, regulariser, strength and its metrics."""

    name: str
    regularizer: str | None
    strength: float | None
    params: dict[str, Any]
    metrics: dict[str, MetricValue]
    samples_sha256: str = ""

    @property
    def label(self) -> str:
        return self.name if self.regularizer is None else f"{self.name}+{self.regularizer}"


@dataclass
class StudyOutput:
    config: StudyConfig
    lemma: list[dict[str, float]]
    points: list[Point]
    dominance: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


class Toy:
    """The trained base, its LoRA adapter slot, the reward and the evaluation noise."""

    def __init__(
        self, config: StudyConfig, out: Path, progress: bool = True, mixture: Mixture | None = None
    ) -> None:
        self.config, self.progress = config, progress
        c = config
        self.mixture: Mixture = mixture or hypercube(c.n_modes, c.dim, std=c.mode_std, seed=c.seed)
        model_config = ToyModelConfig(dim=c.dim, hidden=c.hidden)
        base: ToyDenoiser = cached_base(
            [self.mixture],
            model_config,
            out / "cache",
            steps=c.base_steps,
            batch_size=c.base_batch,
            lr=c.base_lr,
            seed=c.seed,
            progress=progress,
        )
        torch.manual_seed(c.seed)
        self.model = add_lora(base, base.lora_targets, rank=c.lora_rank)
        self.init_state = self.adapter_state()
        # the peak sits at 0.7 * mu_0, 0.3 * |mu_0| (0.85 in 8-D) from mode 0 towards the
        # origin: a known maximiser near one mode
        m0 = self.mixture.means[0]
        self.reward = PeakReward(m0 * 0.7, width=0.5)
        self.noise = torch.randn(
            c.n_eval, c.dim, generator=torch.Generator().manual_seed(c.seed + 1)
        )
        self.scheduler = toy_scheduler()

    def adapter_state(self) -> dict[str, torch.Tensor]:
        state = get_peft_model_state_dict(self.model, adapter_name=ADAPTER)
        return {k: v.detach().clone() for k, v in state.items()}

    def load_adapter(self, state: dict[str, torch.Tensor]) -> None:
        set_peft_model_state_dict(self.model, state, adapter_name=ADAPTER)

    def draft_config(self, **kw: Any) -> DraftConfig:
        c = self.config
        return DraftConfig(
            steps=c.train_steps,
            lr=c.lr,
            weight_decay=0.0,
            k=1,
            num_inference_steps=c.num_inference_steps,
            seed=c.seed,
            **kw,
        )

    def batches(self, g: torch.Generator) -> tuple[None, torch.Tensor]:
        return None, torch.randn(self.config.batch_size, self.config.dim, generator=g)

    def train(
        self, config: DraftConfig, on_step: Callable[[int, dict[str, float]], None] | None = None
    ) -> dict:
        self.load_adapter(self.init_state)
        train_draft(
            self.model,
            self.model,
            self.scheduler,
            self.reward,
            self.batches,
            config,
            on_step=on_step,
            progress=self.progress,
        )
        return self.adapter_state()

    @torch.no_grad()
    def generate(self, predict: Any, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.noise if noise is None else noise
        return sample(predict, self.scheduler, x, num_steps=self.config.num_inference_steps)


def evaluate(x: torch.Tensor, ref: torch.Tensor, toy: Toy) -> dict[str, MetricValue]:
    """All metrics of samples ``x`` against the base model's samples ``ref`` (paired rows)."""
    c, mix = toy.config, toy.mixture
    xs, rs = x.double().numpy(), ref.double().numpy()
    n = len(xs)
    w = mix.weights.double().numpy()
    labels = mix.assign(x).numpy()
    onehot = np.eye(mix.n_modes)[labels]

    def counts_stat(fn: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
        return lambda rows: fn(rows.sum(0))

    boot = {"n_resamples": c.n_boot, "seed": c.seed}
    knn = {"n_resamples": c.n_boot_knn, "seed": c.seed}
    counts = {
        "mode_coverage": lambda k: coverage(k, w),
        "mode_entropy": mode_entropy,
        "kl_to_base": lambda k: mode_kl(k, w),
    }
    intervals = {
        "reward/toy-peak": mean_ci(toy.reward(x.float()).numpy(), **boot),
        "on_mode": mean_ci(mix.on_mode(x).double().numpy(), **boot),
        **{key: bootstrap_ci(counts_stat(fn), onehot, **boot) for key, fn in counts.items()},
        "fid/raw": half_sample_ci(fid_from_features, xs, rs, **boot),
        "scd/raw": half_sample_ci(spectral_covariance_distance, xs, rs, **boot),
        "vendi/raw": half_sample_ci(lambda a: vendi_score(a), xs, **knn),
    }

    def pr(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        precision, recall = precision_recall(b, a, progress=False)
        return {"precision/raw": precision, "recall/raw": recall}

    intervals |= half_sample_intervals(pr, xs, rs, **knn)
    return {key: MetricValue.of(key, iv.estimate, iv, n) for key, iv in intervals.items()}


@contextmanager
def _timer(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 2)


def lemma_curve(toy: Toy, log: Callable[[str], None]) -> tuple[list[dict[str, float]], dict]:
    """Train unregularised DRaFT-K and measure diversity along the way."""
    c = toy.config
    noise = toy.noise[: c.lemma_n]
    w = toy.mixture.weights.numpy()
    curve: list[dict[str, float]] = []

    def measure(step: int, info: dict[str, float]) -> None:
        if step % c.lemma_every and step != c.train_steps:
            return
        x = toy.generate(predictor(toy.model, None), noise)
        counts = toy.mixture.mode_counts(x)
        curve.append(
            {
                "step": step,
                "mode_coverage": coverage(counts, w),
                "mode_entropy": mode_entropy(counts),
                "cov_trace": float(torch.cov(x.T).trace()),
                "reward": float(toy.reward(x).mean()),
            }
        )
        log(
            f"  lemma1 step {step:4d}: coverage {curve[-1]['mode_coverage']:.2f} entropy "
            f"{curve[-1]['mode_entropy']:.2f} tr(cov) {curve[-1]['cov_trace']:.3f} reward "
            f"{curve[-1]['reward']:.3f}"
        )

    state = toy.train(toy.draft_config(), on_step=measure)
    return curve, state


def run_study(
    config: StudyConfig, out: Path, *, progress: bool = True, log: Callable[[str], None] = print
) -> StudyOutput:
    """Run everything and write ``out/results/*.json``, ``out/adapters/`` and plots' data."""
    out = Path(out)
    timings: dict[str, float] = {}
    torch.manual_seed(config.seed)
    with _timer(timings, "base_model"):
        toy = Toy(config, out, progress)
    with _timer(timings, "lemma1"):
        lemma, draft_state = lemma_curve(toy, log)
    toy.load_adapter(draft_state)
    save_lora(
        toy.model,
        out / "adapters" / "draft-k1.safetensors",
        {**toy.draft_config().to_dict(), "toy": asdict(config)},
    )
    base_x = toy.generate(base_predictor(toy.model, toy.model, None))
    points: list[Point] = []

    def add(
        x: torch.Tensor, name: str, reg: str | None, strength: float | None, **params: Any
    ) -> None:
        points.append(
            Point(
                name,
                reg,
                strength,
                params,
                evaluate(x, base_x, toy),
                hashlib.sha256(x.numpy().tobytes()).hexdigest(),
            )
        )
        log(
            f"  evaluated {points[-1].label} {strength if strength is not None else ''} "
            f"{params or ''}"
        )

    T = config.num_inference_steps
    with _timer(timings, "inference_sweeps"):
        add(base_x, "base", None, None)
        add(toy.generate(predictor(toy.model, None)), "draft", None, None, k=1)
        for s in config.lora_scales:
            with lora_scale(toy.model, s):
                add(toy.generate(predictor(toy.model, None)), "draft", "lora-scale", s)
        for spec in config.aig_schedules:
            g = float(np.mean(schedule_values(spec, T)))
            add(
                toy.generate(aig_predictor(toy.model, toy.model, None, spec, T)),
                "draft",
                "aig",
                round(g, 6),
                schedule=spec,
            )
    with _timer(timings, "kl_sweep"):
        for lam in config.kl_lambdas:
            toy.load_adapter(toy.train(toy.draft_config(kl_lambda=lam)))
            add(toy.generate(predictor(toy.model, None)), "draft", "kl", lam)
    with _timer(timings, "draft_lv"):
        lv_config = toy.draft_config(lv=config.lv)
        toy.load_adapter(toy.train(lv_config))
        add(toy.generate(predictor(toy.model, None)), "draft-lv", None, None, lv=config.lv)
        save_lora(
            toy.model,
            out / "adapters" / "draft-lv.safetensors",
            {**lv_config.to_dict(), "toy": asdict(config)},
        )
    dominance = {axis: aig_dominance(points, axis) for axis in DIVERSITY_AXES}
    result = StudyOutput(config, lemma, points, dominance, timings)
    write_results(result, out / "results", base_x)
    return result


RING_SAMPLERS = ("base", "draft", "lora-scale 0.25", "aig power:8")


def ring_pictures(
    config: StudyConfig, out: Path, progress: bool = True
) -> tuple[Mixture, torch.Tensor, dict[str, torch.Tensor]]:
    """The same methods on the 2-D 8-mode ring, for a picture: base, unregularised DRaFT,
    LoRA scale 0.25 and AIG ``power:8`` on that adapter. Returns (mixture, reward peak, samples)."""
    c = replace(config, dim=2, n_modes=8)
    toy = Toy(c, out, progress, mixture=ring(8, radius=2.0, std=0.15))
    toy.load_adapter(toy.train(toy.draft_config()))
    T = c.num_inference_steps
    samples = {
        "base": toy.generate(base_predictor(toy.model, toy.model, None)),
        "draft": toy.generate(predictor(toy.model, None)),
    }
    with lora_scale(toy.model, 0.25):
        samples["lora-scale 0.25"] = toy.generate(predictor(toy.model, None))
    samples["aig power:8"] = toy.generate(aig_predictor(toy.model, toy.model, None, "power:8", T))
    return toy.mixture, toy.reward.center, samples


def _xy(points: list[Point], axis: str) -> np.ndarray:
    return np.array([[p.metrics["reward/toy-peak"].value, p.metrics[axis].value] for p in points])


def series(points: list[Point]) -> dict[str, list[Point]]:
    """Frontier series: each regulariser's sweep with the two shared end points (base, draft)."""
    ends = [p for p in points if p.regularizer is None and p.name in ("base", "draft")]
    out: dict[str, list[Point]] = {}
    for reg in ("kl", "lora-scale", "aig"):
        out[reg] = ends + [p for p in points if p.regularizer == reg]
    return out


def aig_dominance(points: list[Point], axis: str) -> dict[str, Any]:
    """Does AIG's frontier dominate? Hypervolume per series (shared reference point: the
    nadir of all points, 5% further out) and the share of each other series' points that some
    AIG point weakly dominates in (reward, diversity); FID's direction is flipped."""
    maximize = (True, metric_spec(axis).higher_is_better)
    sign = 1.0 if maximize[1] else -1.0
    groups = series(points)
    ref = reference_point(_xy(points, axis), maximize, margin=0.05)
    areas = {k: frontier_area(_xy(v, axis), ref, maximize) for k, v in groups.items()}
    aig = _xy(groups["aig"], axis)
    dominated = {}
    for k in ("kl", "lora-scale"):
        pts = _xy([p for p in groups[k] if p.regularizer == k], axis)
        hit = [bool(np.any((aig[:, 0] >= r) & (sign * aig[:, 1] >= sign * d))) for r, d in pts]
        dominated[k] = float(np.mean(hit)) if hit else float("nan")
    on_front = is_pareto(_xy(points, axis), maximize)
    return {
        "hypervolume": areas,
        "share_dominated_by_aig": dominated,
        "pareto_labels": sorted({points[i].label for i in np.flatnonzero(on_front)}),
        "aig_has_largest_hypervolume": max(areas, key=areas.get) == "aig",
    }


def write_results(study: StudyOutput, folder: Path, base_x: torch.Tensor) -> list[Path]:
    """One rdbench result file per point (``toy=True``), plus ``summary.json`` beside them.

    Result files of an earlier run in ``folder`` are removed first, so the folder never mixes
    two runs' points (each scored against its own base samples)."""
    c = study.config
    for stale in folder.glob("*.json") if folder.is_dir() else []:
        stale.unlink()
    ref_sha = hashlib.sha256(base_x.numpy().tobytes()).hexdigest()
    setup = Setup(
        base_model=f"toy-mlp-gmm{c.n_modes}-{c.dim}d",
        reward_model="toy-peak",
        prompt_suite="toy",
        split="test",
        n_prompts=1,
        n_seeds=c.n_eval,
        n_images=c.n_eval,
        n_reference_images=c.n_eval,
    )
    provenance = Provenance.collect(submitter="rdbench-baselines")
    extractor = Extractor(id=FEATURES, resize_mode="none")
    paths = []
    for p in study.points:
        params = {k: v for k, v in p.params.items()}
        res = Result(
            toy=True,
            method=Method(
                name=p.name, regularizer=p.regularizer, strength=p.strength, params=params
            ),
            setup=setup,
            extractors=[extractor],
            metrics=p.metrics,
            manifest_sha256=p.samples_sha256,
            reference_manifest_sha256=ref_sha,
            provenance=provenance,
            notes="toy testbed (python -m baselines demo); reference = base model "
            "samples; kl_to_base = KL of mode histogram to mixture weights",
        )
        tag = "" if p.strength is None else f"-{p.strength:g}"
        extra = "".join(f"-{v}" for v in params.values()).replace(":", "").replace(",", "_")
        paths.append(res.save(folder / f"{p.label}{tag}{extra}.json"))
    return paths


def summary(study: StudyOutput) -> dict[str, Any]:
    return {
        "config": asdict(study.config),
        "timings_s": study.timings,
        "lemma1": study.lemma,
        "dominance": study.dominance,
        "points": [
            {
                "label": p.label,
                "strength": p.strength,
                "params": p.params,
                "metrics": {k: v.model_dump() for k, v in p.metrics.items()},
            }
            for p in study.points
        ],
    }


def table(study: StudyOutput) -> str:
    """The printed summary: one row per point."""
    cols = [
        "reward/toy-peak",
        "recall/raw",
        "mode_entropy",
        "mode_coverage",
        "fid/raw",
        "precision/raw",
        "scd/raw",
        "vendi/raw",
    ]
    head = (
        f"{'method':<22}{'strength':>9}  {'reward [95% CI]':<24}{'recall [95% CI]':<22}"
        f"{'entropy':>8}{'cover':>7}{'FID':>8}{'prec':>6}{'SCD':>8}{'vendi':>7}"
    )
    rows = [head, "-" * len(head)]
    for p in study.points:
        m = p.metrics
        name = p.label + (f" {p.params['schedule']}" if "schedule" in p.params else "")
        st = "" if p.strength is None else f"{p.strength:.3g}"
        r, rc = m[cols[0]], m[cols[1]]
        rows.append(
            f"{name:<22}{st:>9}  {r.value:7.3f} [{r.low:6.3f},{r.high:6.3f}]  "
            f"{rc.value:5.3f} [{rc.low:5.3f},{rc.high:5.3f}]  {m['mode_entropy'].value:8.3f}"
            f"{m['mode_coverage'].value:7.2f}{m['fid/raw'].value:8.3f}"
            f"{m['precision/raw'].value:6.2f}{m['scd/raw'].value:8.4f}{m['vendi/raw'].value:7.2f}"
        )
    return "\n".join(rows)


def dump_summary(study: StudyOutput, path: Path) -> None:
    path.write_text(json.dumps(summary(study), indent=2, default=float) + "\n")


__all__ = ["StudyConfig", "ring_pictures", "run_study", "summary", "table"]
