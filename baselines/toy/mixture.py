"""Gaussian mixtures with known modes, and exact diversity measures against them.

``ring(8)`` is the 2-D picture case; ``hypercube(16, dim=8)`` has 16 equal-weight modes at
distinct vertices of a scaled hypercube in 8-D, so that FID, recall and SCD have room to
move. A mixture per "prompt" comes from ``prompt_mixtures`` (each prompt a different mixture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rdbench.errors import RdbenchError


@dataclass(frozen=True)
class Mixture:
    """``sum_k w_k N(mu_k, std^2 I)`` with ``means`` (M, d), ``weights`` (M,) and one ``std``."""

    means: torch.Tensor
    weights: torch.Tensor
    std: float

    def __post_init__(self) -> None:
        if self.means.ndim != 2 or self.weights.shape != (self.means.shape[0],):
            raise RdbenchError("Mixture needs means (M, d) and weights (M,)")
        if abs(float(self.weights.sum()) - 1.0) > 1e-6 or self.std <= 0:
            raise RdbenchError("Mixture weights must sum to 1 and std must be > 0")

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Exact samples (float32)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator)
        return self.means[k] + self.std * z

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Mode index of each sample: the nearest mean (the MAP mode for equal weights/stds)."""
        return torch.cdist(x.float(), self.means).argmin(dim=1)

    def on_mode(self, x: torch.Tensor, q: float = 0.99) -> torch.Tensor:
        """Whether each sample lies within some mode's ``q`` radius, ``std * sqrt(chi2_d(q))``
        (99% of an exact mode's own samples do). :meth:`assign` labels every sample with its
        nearest mode however far away it is; this says how many are really on one."""
        from scipy.stats import chi2

        radius = self.std * math.sqrt(chi2.ppf(q, self.dim))
        return torch.cdist(x.float(), self.means).min(dim=1).values <= radius

    def mode_counts(self, x: torch.Tensor) -> np.ndarray:
        return np.bincount(self.assign(x).numpy(), minlength=self.n_modes)


def ring(n_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> Mixture:
    """``n_modes`` equal modes on a circle in 2-D."""
    a = torch.arange(n_modes, dtype=torch.float32) * (2 * math.pi / n_modes)
    means = radius * torch.stack([a.cos(), a.sin()], dim=1)
    return Mixture(means, torch.full((n_modes,), 1.0 / n_modes), std)


def hypercube(
    n_modes: int = 16, dim: int = 8, scale: float = 1.0, std: float = 0.15, seed: int = 0
) -> Mixture:
    """``n_modes`` equal modes at distinct random vertices ``{-scale, +scale}^dim``."""
    if n_modes > 2**dim:
        raise RdbenchError(f"a {dim}-D hypercube has only {2**dim} vertices (< {n_modes})")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(2**dim, generator=g)[:n_modes]
    bits = (idx[:, None] >> torch.arange(dim)) & 1
    means = scale * (2.0 * bits.float() - 1.0)
    return Mixture(means, torch.full((n_modes,), 1.0 / n_modes), std)


def prompt_mixtures(
    n_prompts: int, n_modes: int = 16, dim: int = 8, seed: int = 0, **kwargs: float
) -> list[Mixture]:
    """One different mixture per prompt index (different vertex sets)."""
    return [hypercube(n_modes, dim, seed=seed + p, **kwargs) for p in range(n_prompts)]


def coverage(counts: np.ndarray, weights: np.ndarray, threshold: float = 0.25) -> float:
    """Fraction of modes holding at least ``threshold`` times their expected share of samples."""
    share = counts / max(counts.sum(), 1)
    return float(np.mean(share >= threshold * weights))


def mode_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the empirical mode assignment; ``log M`` for a uniform spread."""
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return max(0.0, float(-(p * np.log(p)).sum()))


def mode_kl(counts: np.ndarray, weights: np.ndarray) -> float:
    """``KL(p_hat || w)`` (nats) between empirical mode proportions and the mixture weights."""
    p = counts / max(counts.sum(), 1)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / weights[nz])).sum())
