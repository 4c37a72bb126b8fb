"""PNG figures of the toy study (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from baselines.toy.mixture import Mixture  # noqa: E402
from baselines.toy.study import DIVERSITY_AXES, StudyOutput, series  # noqa: E402
from rdbench.results import metric_spec  # noqa: E402

REWARD = "reward/toy-peak"
COLORS = {"kl": "tab:blue", "lora-scale": "tab:orange", "aig": "tab:green"}


def _err(values: list, key: str) -> tuple[list[float], list[list[float]]]:
    mid = [m[key].value for m in values]
    lo = [max(m[key].value - m[key].low, 0.0) for m in values]
    hi = [max(m[key].high - m[key].value, 0.0) for m in values]
    return mid, [lo, hi]


def frontier_plot(study: StudyOutput, path: Path) -> Path:
    """Reward vs diversity (recall against the base; mode entropy), one line per regulariser."""
    fig, axes = plt.subplots(1, len(DIVERSITY_AXES), figsize=(6 * len(DIVERSITY_AXES), 4.5))
    for ax, axis in zip(axes, DIVERSITY_AXES, strict=True):
        for reg, pts in series(study.points).items():
            pts = sorted(pts, key=lambda p: p.metrics[REWARD].value)
            ms = [p.metrics for p in pts]
            x, xerr = _err(ms, axis)
            y, yerr = _err(ms, REWARD)
            ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                marker="o",
                ms=4,
                capsize=2,
                color=COLORS[reg],
                label=reg,
                alpha=0.85,
            )
        for p in study.points:
            if p.regularizer is None:
                ax.annotate(
                    p.label,
                    (p.metrics[axis].value, p.metrics[REWARD].value),
                    fontsize=8,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
        better = "higher" if metric_spec(axis).higher_is_better else "lower"
        against = "" if axis.startswith("mode_") else " vs base model"
        ax.set_xlabel(f"{axis}{against} (diversity, {better} is better)")
        ax.set_ylabel("mean reward (higher is better)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        "Toy reward-diversity frontiers (95% intervals: bootstrap for rewards and modes, "
        "half-sample for FID, SCD, Vendi, precision and recall)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lemma1_plot(study: StudyOutput, path: Path) -> Path:
    """Mode coverage, entropy, covariance trace and reward over unregularised DRaFT steps."""
    steps = [r["step"] for r in study.lemma]
    keys = [
        ("mode_coverage", "mode coverage"),
        ("mode_entropy", "mode entropy (nats)"),
        ("cov_trace", "trace of sample covariance"),
        ("reward", "mean reward"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, title) in zip(axes, keys, strict=True):
        ax.plot(steps, [r[key] for r in study.lemma], marker="o", ms=3)
        ax.set_title(title)
        ax.set_xlabel("DRaFT-K training step")
        ax.grid(alpha=0.3)
    fig.suptitle("Lemma 1 in practice: unregularised DRaFT collapses diversity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ring_plot(
    mixture: Mixture, peak: torch.Tensor, samples: dict[str, torch.Tensor], path: Path
) -> Path:
    """Scatter of each sampler's 2-D samples with the ring's modes and the reward's maximiser."""
    fig, axes = plt.subplots(1, len(samples), figsize=(3.6 * len(samples), 3.8))
    lim = float(mixture.means.abs().max()) + 1.0
    for ax, (name, x) in zip(axes, samples.items(), strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
        ax.scatter(mixture.means[:, 0], mixture.means[:, 1], marker="x", c="k", s=30)
        ax.scatter(
            [float(peak[0])],
            [float(peak[1])],
            marker="*",
            s=160,
            facecolors="none",
            edgecolors="tab:red",
        )
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("8-mode ring: modes (x) and the reward's maximiser (hollow red star)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
