"""Reward models: one registry, one loader, one interface.

>>> reward = rdbench.rewards.load("pickscore", device="cuda", dtype="float16")
>>> reward.score(images, prompts)            # np.ndarray, official preprocessing, no grad
>>> reward.score_tensor(x, prompts)          # torch.Tensor, differentiable w.r.t. x in [0, 1]

Names: ``pickscore``, ``hpsv2`` (versions ``v2.0``/``v2.1``, default ``v2.1``),
``imagereward`` (registered, not available yet), ``clipscore``, ``aesthetic``. A version can
be part of the name (``"hpsv2:v2.0"``, as on the command line) or passed as ``version=``.
Every weights file comes through :mod:`rdbench.hub` from the entries in :mod:`rdbench.weights`;
``weights=`` overrides the reward's main file or folder with a local path.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import torch

from rdbench.devices import resolve_device
from rdbench.errors import RdbenchError
from rdbench.registry import Registry
from rdbench.rewards.base import Reward, RewardInfo, as_dtype


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward: its description and the module whose ``load`` builds it."""

    info: RewardInfo
    module: str

    def loader(self) -> ModuleType:
        return importlib.import_module(self.module)


REWARDS: Registry[RewardSpec] = Registry("reward")


def _register(module: str) -> None:
    mod = importlib.import_module(f"rdbench.rewards.{module}")
    REWARDS.register(mod.INFO.name, RewardSpec(mod.INFO, mod.__name__))


for _module in ("pickscore", "hpsv2", "imagereward", "clipscore", "aesthetic"):
    _register(_module)


def parse_name(name: str, version: str | None = None) -> tuple[RewardSpec, str]:
    """``"hpsv2:v2.0"`` -> (spec, ``"v2.0"``); the version defaults to the reward's default."""
    if not isinstance(name, str):
        raise RdbenchError(f"reward name must be a string, got {type(name).__name__}")
    base, _, suffix = name.strip().partition(":")
    spec = REWARDS.get(base)
    if suffix and version is not None and suffix != version:
        raise RdbenchError(f"reward {name!r} names version {suffix!r} but version={version!r}")
    version = suffix or version or spec.info.default_version
    if version not in spec.info.versions:
        raise RdbenchError(
            f"reward {base!r} has no version {version!r}; available: "
            f"{', '.join(spec.info.versions)}"
        )
    return spec, version


def load(
    name: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    weights: str | None = None,
    *,
    version: str | None = None,
    **options,
) -> Reward:
    """Load reward ``name`` once (weights through :mod:`rdbench.hub`) on ``device``/``dtype``.

    ``device=None`` picks the current CUDA device if any, else the CPU; ``dtype=None`` is
    float32. ``options`` are reward-specific (see ``rdbench rewards list``), e.g. ``arch=``
    for the open_clip rewards or ``processor=`` for PickScore.
    """
    spec, version = parse_name(name, version)
    unknown = set(options) - set(spec.info.options)
    if unknown:
        known = ", ".join(spec.info.options) or "none"
        raise RdbenchError(
            f"reward {spec.info.name!r} has no option(s) {sorted(unknown)}; options: {known}"
        )
    return spec.loader().load(
        version=version,
        device=resolve_device(device),
        dtype=as_dtype(dtype),
        weights=None if weights is None else str(weights),
        **options,
    )


def info(name: str) -> RewardInfo:
    """The description of reward ``name`` (without loading it)."""
    return parse_name(name)[0].info


from rdbench.rewards.scoring import ScoreResult, score_imageset  # noqa: E402

__all__ = [
    "REWARDS",
    "Reward",
    "RewardInfo",
    "RewardSpec",
    "ScoreResult",
    "info",
    "load",
    "parse_name",
    "score_imageset",
]
