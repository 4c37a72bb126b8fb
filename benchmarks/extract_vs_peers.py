"""Images per second: rdbench's feature extraction against clean-fid's folder pipeline.

Usage: ``python benchmarks/extract_vs_peers.py [--n 500] [--size 256] [--batch-size 64]
[--workers 2] [--device cpu|cuda]``.

Both sides run the same network and the same files: a TorchScript archive with the call
interface of clean-fid's ``inception-2015-12-05.pt`` whose body is torchvision's Inception-v3
(real size: 21.8M parameters, 299x299 input, 2048-d pool features) with random weights (the
published file cannot be downloaded here), built by ``tests/tiny_models.make_inception(full=
True)``; and ``--n`` procedurally drawn PNGs (``tests/imagegen.make_plain_folder``). clean-fid
runs ``cleanfid.fid.get_folder_features(mode="clean")`` with clean-fid's ``InceptionV3W`` on the
file; rdbench runs ``extract_features(..., cache=False)`` with ``load_extractor("inception")``.
Same batch size and worker count; each side is warmed up first (TorchScript profiles its first
calls), then the best of ``--repeats`` timed runs is kept. Target: rdbench at least 1.0x
clean-fid's images/s (goal 1.5x), features equal to 1e-4 relative.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TARGET_SPEEDUP = 1.0
GOAL_SPEEDUP = 1.5


def _best(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(
    n: int = 500,
    size: int = 256,
    batch_size: int = 64,
    workers: int = 2,
    repeats: int = 2,
    device: str | None = None,
    workdir: str | None = None,
) -> dict:
    """Time both pipelines; return images/s, the speedup and the feature agreement."""
    from cleanfid.fid import get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W
    from imagegen import make_plain_folder
    from tiny_models import make_inception

    from rdbench.features import load_extractor
    from rdbench.features.extract import extract_features
    from rdbench.imageset import ImageSet

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        weights = make_inception(Path(tmp) / "weights", full=True)
        folder = make_plain_folder(Path(tmp) / "images", n, size=(size, size))
        warm = make_plain_folder(Path(tmp) / "warmup", 2 * batch_size, size=(size, size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            theirs_model = InceptionV3W(str(weights.parent), download=False).eval().to(dev)
        ours_model = load_extractor("inception", weights=str(weights), device=dev)

        def theirs(path: Path) -> np.ndarray:
            return get_folder_features(
                str(path), model=theirs_model, num_workers=workers, batch_size=batch_size,
                device=dev, mode="clean", verbose=False,
            )  # fmt: skip

        def ours(path: Path) -> np.ndarray:
            return extract_features(
                ImageSet.open(path), ours_model, batch_size=batch_size, num_workers=workers,
                cache=False, progress=False,
            ).array  # fmt: skip

        theirs(warm), ours(warm)
        t_theirs, f_theirs = _best(lambda: theirs(folder), repeats)
        t_ours, f_ours = _best(lambda: ours(folder), repeats)
    scale = float(np.abs(f_theirs).max()) or 1.0
    speedup = t_theirs / t_ours
    return {
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "n_images": n,
        "image_size": size,
        "batch_size": batch_size,
        "num_workers": workers,
        "cleanfid_images_per_s": n / t_theirs,
        "rdbench_images_per_s": n / t_ours,
        "speedup": speedup,
        "max_rel_feature_diff": float(np.abs(f_ours - f_theirs).max()) / scale,
        "meets_target": speedup >= TARGET_SPEEDUP,
        "meets_goal": speedup >= GOAL_SPEEDUP,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    result = run(args.n, args.size, args.batch_size, args.workers, args.repeats, args.device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
