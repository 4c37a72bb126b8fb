"""Time and peak memory of rdbench's precision/recall/density/coverage against prdc's.

Usage: ``python benchmarks/manifold_vs_peers.py [--quick] [--n 5000] [--large-n 50000]``.

Each measurement runs in a fresh spawned process that draws the same float32 features
(d = 2048, see ``_features``) and then calls one
implementation; peak memory is that process's peak RSS (``ru_maxrss``), reported in total and
as the increment over its RSS just before the call (features, imports and one-time library
initialisation, done by a warm-up call on 50 samples, excluded). Targets
from the issue: at N = 5,000 rdbench at least 3x faster than ``prdc.compute_prdc`` with at
most a third of its peak-memory increment and the same four values; at N = 50,000 (rdbench
only: prdc would need about 60 GB) peak RSS under 4 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import resource
import time

import numpy as np
import psutil

TARGET_SPEEDUP = 3.0
TARGET_MEMORY_RATIO = 1.0 / 3.0
TARGET_LARGE_PEAK_BYTES = 4 * 2**30
K = 5
LATENT = 16


def _features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features on a 16-dim linear manifold plus 0.1 isotropic noise (k-NN metrics are
    degenerate on full-rank Gaussians in 2048 dims); the generator is shifted and narrower."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((LATENT, d), dtype=np.float32) / np.float32(np.sqrt(LATENT))
    sets = []
    for shift, scale in ((0.0, 1.0), (0.5, 0.8)):
        out = rng.standard_normal((n, d), dtype=np.float32)
        out *= 0.1
        latent = rng.standard_normal((n, LATENT), dtype=np.float32) * scale + shift
        for i in range(0, n, 4096):  # in chunks: no (n, d) temporary
            out[i : i + 4096] += latent[i : i + 4096] @ mix
        sets.append(out)
    return sets[0], sets[1]


def _measure(impl: str, n: int, d: int, seed: int, batch_size: int) -> dict:
    """Runs in a child process: one call of one implementation on fresh features."""
    ref, gen = _features(n, d, seed)
    if impl == "prdc":
        from prdc import compute_prdc

        def call() -> dict:
            with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
                out = compute_prdc(real_features=ref, fake_features=gen, nearest_k=K)
            return {name: float(v) for name, v in out.items()}

        def warm_up(a: np.ndarray, b: np.ndarray) -> None:
            compute_prdc(a, b, nearest_k=K)
    else:
        from rdbench.metrics.manifold import prdc

        def call() -> dict:
            out = prdc(ref, gen, k=K, batch_size=batch_size, progress=impl == "rdbench-progress")
            return {n: out.to_dict()[n] for n in ("precision", "recall", "density", "coverage")}

        def warm_up(a: np.ndarray, b: np.ndarray) -> None:
            prdc(a, b, k=K, batch_size=batch_size)

    tiny = _features(50, d, seed + 1)
    with contextlib.redirect_stdout(io.StringIO()):
        warm_up(*tiny)  # one-time library initialisation is not part of the increment
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    values = call()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "peak_increment_bytes": max(peak - rss_before, 0),
        "values": values,
    }


def _child(queue: multiprocessing.Queue, *args: object) -> None:
    queue.put(_measure(*args))


def _in_fresh_process(impl: str, n: int, d: int, seed: int, batch_size: int) -> dict:
    """A spawned, non-daemon process (so prdc/sklearn may use its threads as usual)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, impl, n, d, seed, batch_size))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def run(
    n: int = 5000,
    large_n: int | None = 50_000,
    d: int = 2048,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Measure both libraries at ``n`` and rdbench alone at ``large_n``; return the figures."""
    ours = _in_fresh_process("rdbench", n, d, seed, batch_size)
    peer = _in_fresh_process("prdc", n, d, seed, batch_size)
    diff = max(abs(ours["values"][m] - peer["values"][m]) for m in ours["values"])
    result: dict = {
        "d": d,
        "k": K,
        "n": n,
        "batch_size": batch_size,
        "rdbench": ours,
        "prdc": peer,
        "speedup_vs_prdc": peer["seconds"] / ours["seconds"],
        "memory_ratio_vs_prdc": ours["peak_increment_bytes"] / peer["peak_increment_bytes"],
        "max_abs_value_diff": diff,
    }
    ok = (
        result["speedup_vs_prdc"] >= TARGET_SPEEDUP
        and result["memory_ratio_vs_prdc"] <= TARGET_MEMORY_RATIO
        and diff <= 1e-6
    )
    if large_n:
        impl = "rdbench-progress" if progress else "rdbench"
        large = _in_fresh_process(impl, large_n, d, seed, batch_size)
        result["large"] = {"n": large_n, **large}
        ok = ok and large["peak_rss_bytes"] < TARGET_LARGE_PEAK_BYTES
    result["meets_targets"] = bool(ok)
    return result


def _report(result: dict) -> str:
    gib = 2**30
    lines = [f"manifold metrics, d={result['d']}, k={result['k']}, N=M={result['n']}"]
    for name in ("rdbench", "prdc"):
        r = result[name]
        lines.append(
            f"  {name:8s} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_bytes'] / gib:6.2f} GiB"
            f"  (+{r['peak_increment_bytes'] / gib:.2f} GiB)  {r['values']}"
        )
    lines.append(
        f"  speedup {result['speedup_vs_prdc']:.2f}x (target >= {TARGET_SPEEDUP}x), memory "
        f"ratio {result['memory_ratio_vs_prdc']:.3f} (target <= 0.333), max |diff| "
        f"{result['max_abs_value_diff']:.2e}"
    )
    if "large" in result:
        r = result["large"]
        lines.append(
            f"  rdbench N=M={r['n']}: {r['seconds']:.1f} s, peak RSS "
            f"{r['peak_rss_bytes'] / gib:.2f} GiB (+{r['peak_increment_bytes'] / gib:.2f} GiB; "
            f"target < 4 GiB)  {r['values']}"
        )
    lines.append(f"  meets targets: {result['meets_targets']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=1000, 5000)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--large-n", type=int, default=50_000, help="0 to skip")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    n, large_n = (1000, 5000 if args.large_n else 0) if args.quick else (args.n, args.large_n)
    result = run(n, large_n or None, args.dim, args.batch_size, progress=True)
    print(json.dumps(result, indent=2) if args.json else _report(result))


if __name__ == "__main__":
    main()
