"""Built-in synthetic feature sets with known structure, for the offline demo and tests.

The reference ("base model") is a mixture of ``n_modes`` Gaussians with means on a scaled
simplex-like set of random directions. Derived sets mimic what reward finetuning does:
``collapsed`` keeps one mode and shrinks its spread (reward hacking, Lemma 1 of arXiv
2409.06493); ``partial`` keeps a few modes at reduced spread (a regularised model);
``fresh`` is a new sample of the reference distribution (an ideal model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rdbench.errors import RdbenchError


@dataclass(frozen=True)
class GaussianMixture:
    """Equal-weight mixture: ``means`` (m, d) and a shared isotropic ``std``."""

    means: np.ndarray
    std: float

    def sample(
        self, n: int, rng: np.random.Generator, modes: np.ndarray | None = None, scale: float = 1.0
    ) -> np.ndarray:
        """Draw ``n`` points; ``modes`` restricts which components are used, ``scale`` the std."""
        if n < 1:
            raise RdbenchError(f"number of samples must be >= 1, got {n}")
        modes = np.arange(len(self.means)) if modes is None else np.asarray(modes)
        comp = modes[rng.integers(0, len(modes), size=n)]
        noise = rng.standard_normal((n, self.means.shape[1]))
        return self.means[comp] + self.std * scale * noise


def make_mixture(n_modes: int = 8, dim: int = 64, separation: float = 6.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_modes, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return GaussianMixture(means=separation * directions, std=1.0)


def demo_sets(n: int = 2000, dim: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Reference plus three generated sets: ``fresh``, ``partial`` and ``collapsed``."""
    mixture = make_mixture(dim=dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return {
        "reference": mixture.sample(n, rng),
        "fresh": mixture.sample(n, rng),
        "partial": mixture.sample(n, rng, modes=np.arange(3), scale=0.7),
        "collapsed": mixture.sample(n, rng, modes=np.array([0]), scale=0.3),
    }
