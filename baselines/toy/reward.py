"""Differentiable toy rewards with known maximisers.

``PeakReward``: ``r(x) = 1 - sqrt(1 + ||x - c||^2 / w^2)`` (negative pseudo-Huber distance):
maximum 0 at ``x = c``, quadratic near ``c`` and with gradient norm ~ ``1/w`` far away, so
every sample feels the pull (a Gaussian bump would give far modes no gradient).
``MultiPeakReward``: a soft maximum over several such peaks,
``r(x) = tau * log mean_j exp(r_j(x) / tau)``; with peaks placed symmetrically (e.g. on
modes of a ring) the maxima are equal by symmetry.
"""

from __future__ import annotations

from typing import Any

import torch

from rdbench.errors import RdbenchError


def _peak(x: torch.Tensor, center: torch.Tensor, width: float) -> torch.Tensor:
    return 1.0 - torch.sqrt(1.0 + ((x - center) ** 2).sum(-1) / width**2)


class PeakReward:
    """One smooth peak at ``center`` (the known maximiser)."""

    def __init__(self, center: torch.Tensor, width: float = 0.5) -> None:
        if width <= 0:
            raise RdbenchError(f"reward width must be > 0, got {width}")
        self.center, self.width = center.float(), float(width)

    def __call__(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return _peak(x, self.center.to(x), self.width)


class MultiPeakReward:
    """Soft maximum of peaks at ``centers`` (K, d): several (near-)equal maxima."""

    def __init__(self, centers: torch.Tensor, width: float = 0.5, tau: float = 0.1) -> None:
        if centers.ndim != 2 or width <= 0 or tau <= 0:
            raise RdbenchError("MultiPeakReward needs centers (K, d), width > 0 and tau > 0")
        self.centers, self.width, self.tau = centers.float(), float(width), float(tau)

    def __call__(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        r = _peak(x[:, None, :], self.centers.to(x)[None], self.width)
        k = torch.tensor(float(self.centers.shape[0])).log()
        return self.tau * (torch.logsumexp(r / self.tau, dim=1) - k)
