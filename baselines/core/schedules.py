"""AIG schedules: the finetuned model's weight ``g_i`` at sampler step ``i``.

Time convention (stated once, used everywhere): the sampler runs steps ``i = 0 .. T-1`` with
``i = 0`` the noisiest; AIG predicts ``eps_hat_i = (1 - g_i) eps_base + g_i eps_ft``. In
diffusion time ``t`` (``t = T`` noisiest) the base weight of ``power:p`` is
``1 - (1 - t/T)^p``; the paper's example ``gamma(t) = 1 - (1 - t/T)^2`` is ``power:2``.

Specs: ``base`` (g = 0), ``draft`` (g = 1), ``linear`` (i/T), ``power:p`` ((i/T)^p),
``step:f`` (1[i/T >= f]), ``sigmoid:k,m`` (logistic in i/T with slope k and midpoint m,
rescaled to run from 0 at i = 0 to 1 at i = T). A callable ``g(i, T) -> float`` is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rdbench.errors import RdbenchError
from rdbench.registry import Registry

Schedule = Callable[[int, int], float]
"""``g(i, T)``: weight of the finetuned prediction at step ``i`` of ``T`` (``i = 0`` noisiest)."""

SCHEDULES: Registry[Callable[..., Schedule]] = Registry("AIG schedule")


def _frac(i: int, total: int) -> float:
    if total < 1 or not 0 <= i < total:
        raise RdbenchError(f"step index {i} outside 0..{total - 1}")
    return i / total


@SCHEDULES.register("base")
def base() -> Schedule:
    return lambda i, total: 0.0


@SCHEDULES.register("draft")
def draft() -> Schedule:
    return lambda i, total: 1.0


@SCHEDULES.register("linear")
def linear() -> Schedule:
    return _frac


@SCHEDULES.register("power")
def power(p: float) -> Schedule:
    if p <= 0:
        raise RdbenchError(f"power:p needs p > 0, got {p}")
    return lambda i, total: _frac(i, total) ** p


@SCHEDULES.register("step")
def step(f: float) -> Schedule:
    if not 0.0 <= f <= 1.0:
        raise RdbenchError(f"step:f needs 0 <= f <= 1, got {f}")
    return lambda i, total: float(_frac(i, total) >= f)


@SCHEDULES.register("sigmoid")
def sigmoid(k: float, m: float = 0.5) -> Schedule:
    if k <= 0:
        raise RdbenchError(f"sigmoid:k,m needs k > 0, got k={k}")

    def raw(u: float) -> float:  # the logistic 1 / (1 + exp(-k (u - m))), without overflow
        return 0.5 * (1.0 + math.tanh(0.5 * k * (u - m)))

    lo, hi = raw(0.0), raw(1.0)
    if hi - lo < 1e-9:
        raise RdbenchError(
            f"sigmoid:{k:g},{m:g} is flat over the whole run (the midpoint m is far outside "
            "[0, 1] for this slope k): choose m in [0, 1] or a smaller k"
        )
    return lambda i, total: (raw(_frac(i, total)) - lo) / (hi - lo)


def parse_schedule(spec: str | Schedule) -> Schedule:
    """``"power:2"`` -> schedule; ``"sigmoid:10,0.5"`` passes two numbers; callables pass through.

    Every value is clipped to [0, 1]; a value that is not a finite number raises.
    """
    if callable(spec):
        fn = spec
    elif isinstance(spec, str):
        name, _, args = spec.strip().partition(":")
        try:
            params = [float(a) for a in args.split(",")] if args else []
        except ValueError:
            raise RdbenchError(f"AIG schedule {spec!r}: parameters must be numbers") from None
        if not all(math.isfinite(p) for p in params):
            raise RdbenchError(f"AIG schedule {spec!r}: parameters must be finite numbers")
        factory = SCHEDULES.get(name)
        try:
            fn = factory(*params)
        except TypeError:
            raise RdbenchError(
                f"AIG schedule {spec!r}: wrong number of parameters; examples: base, draft, "
                "linear, power:2, step:0.5, sigmoid:10,0.5"
            ) from None
    else:
        raise RdbenchError(f"AIG schedule must be a spec string or a callable, got {spec!r}")

    def clipped(i: int, total: int) -> float:
        g = float(fn(i, total))
        if not math.isfinite(g):
            raise RdbenchError(f"AIG schedule {spec!r} gave g = {g} at step {i} of {total}")
        return min(1.0, max(0.0, g))

    return clipped


def schedule_values(spec: str | Schedule, total: int) -> list[float]:
    """All ``g_i`` for ``i = 0 .. total-1``."""
    fn = parse_schedule(spec)
    return [fn(i, total) for i in range(total)]
