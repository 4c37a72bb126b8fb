"""End-to-end ``rdbench.evaluate`` against clean-fid + prdc run one after the other.

Usage: ``python benchmarks/evaluate_vs_peers.py [--n 300] [--size 64] [--batch-size 50]``.

Two folders of ``n`` procedurally drawn PNGs (``tests/imagegen.py``; the reference and another
"model" drawn with a different seed) and one random-weight Inception-v3 of the real size in
clean-fid's TorchScript format (``tests/tiny_models.make_inception(full=True)``) used by both
sides. Timed on the CPU, no feature cache, each side in a fresh spawned process (both pay the
TorchScript first-call optimisation and imports once):

- rdbench: ``rdbench.evaluate(gen, reference=ref)`` with FID, precision, recall, density,
  coverage and SCD (k = 5 for all four k-NN metrics, as prdc), no bootstrap, per-prompt
  diversity off: features are extracted once per folder;
- peers: clean-fid's ``compute_fid`` on the two folders, then clean-fid's
  ``get_folder_features`` for both folders again and ``prdc.compute_prdc`` (nearest_k=5);
  clean-fid cannot hand its features to prdc, so images are read and embedded twice.

Target from the issue: rdbench's time at most 0.6x the peers' summed time. The values are
compared too (FID relative difference; the four prdc values; ties are absent on continuous
features so prdc's strict ``<`` does not matter). With fewer images than feature dimensions
(N < 2048) the covariances are singular and clean-fid's ``scipy.linalg.sqrtm`` may fail with
"Imaginary component"; its time is still counted (the work was done) and its FID is null.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the image and model generators used by the tests

TARGET_RATIO = 0.6
K = 5


def _prepare(root: Path, n: int, size: int) -> tuple[Path, Path, Path]:
    from imagegen import make_image_set
    from tiny_models import make_inception

    prompts = 10
    seeds = range(-(-n // prompts))
    ref = make_image_set(root / "ref", prompts, seeds, size=(size, size), seed=0)
    gen = make_image_set(root / "gen", prompts, seeds, size=(size, size), seed=1)
    return ref, gen, make_inception(root / "weights", full=True)


def _rdbench(ref: Path, gen: Path, weights: Path, batch_size: int) -> dict[str, float]:
    import rdbench
    from rdbench.metrics.sets import MetricOptions

    result = rdbench.evaluate(
        gen,
        reference=ref,
        extractors=("inception",),
        metrics=("fid", "precision", "recall", "density", "coverage", "scd"),
        metric_options=MetricOptions(pr_k=K, dc_k=K),
        weights={"inception": str(weights)},
        device="cpu",
        batch_size=batch_size,
        cache=False,
        bootstrap=0,
        mean_resamples=0,
        per_prompt=False,
        progress=False,
        quiet=True,
    )
    return {key.split("/")[0]: mv.value for key, mv in result.metrics.items()}


def _timed_rdbench(ref: Path, gen: Path, weights: Path, batch_size: int) -> tuple[dict, float]:
    start = time.perf_counter()
    values = _rdbench(ref, gen, weights, batch_size)
    return values, time.perf_counter() - start


def _peers(ref: Path, gen: Path, weights: Path, batch_size: int) -> tuple[dict, float, float]:
    from cleanfid.fid import compute_fid, get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W
    from prdc import compute_prdc

    model = InceptionV3W(str(weights.parent), download=False).eval()
    settings = {"num_workers": 0, "batch_size": batch_size, "device": torch.device("cpu")}
    start = time.perf_counter()
    try:
        fid: float | None = compute_fid(
            str(ref), str(gen), mode="clean", custom_feat_extractor=model, verbose=False,
            **settings,
        )  # fmt: skip
    except ValueError as exc:  # scipy's sqrtm on singular covariances (N < 2048)
        print(f"clean-fid failed after all its work: {exc}", file=sys.stderr)
        fid = None
    t_fid = time.perf_counter() - start
    start = time.perf_counter()
    real = get_folder_features(str(ref), model, mode="clean", verbose=False, **settings)
    fake = get_folder_features(str(gen), model, mode="clean", verbose=False, **settings)
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        values = compute_prdc(real_features=real, fake_features=fake, nearest_k=K)
    t_prdc = time.perf_counter() - start
    scores = {"fid": None if fid is None else float(fid)}
    return scores | {k: float(v) for k, v in values.items()}, t_fid, t_prdc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images per folder")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rdbench-bench-") as tmp:
        ref, gen, weights = _prepare(Path(tmp), args.n, args.size)
        # Each side in a fresh process: both pay TorchScript's first-call optimisation once.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            ours, t_ours = pool.submit(_timed_rdbench, ref, gen, weights, args.batch_size).result()
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            theirs, t_fid, t_prdc = pool.submit(_peers, ref, gen, weights, args.batch_size).result()
    t_peers = t_fid + t_prdc
    report = {
        "n_per_folder": args.n,
        "torch_threads": torch.get_num_threads(),
        "rdbench_s": t_ours,
        "cleanfid_compute_fid_s": t_fid,
        "cleanfid_features_plus_prdc_s": t_prdc,
        "ratio": t_ours / t_peers,
        "target_ratio": TARGET_RATIO,
        "fid_rel_diff": None
        if theirs["fid"] is None
        else abs(ours["fid"] - theirs["fid"]) / abs(theirs["fid"]),
        "rdbench": ours,
        "peers": theirs,
    }
    print(
        f"rdbench.evaluate {t_ours:.1f} s; clean-fid compute_fid {t_fid:.1f} s + features + "
        f"prdc {t_prdc:.1f} s = {t_peers:.1f} s; ratio {report['ratio']:.2f} "
        f"(target <= {TARGET_RATIO}); FID rdbench {ours['fid']:.6g}, clean-fid {theirs['fid']}"
    )
    for name in ("precision", "recall", "density", "coverage"):
        print(f"  {name:9s} rdbench {ours[name]:.4f}  prdc {theirs[name]:.4f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
