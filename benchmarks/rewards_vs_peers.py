"""Images scored per second: rdbench's batched HPSv2 vs the ``hpsv2`` package's scoring path.

Both use the same random weights, written in the HPS checkpoint format. The ``hpsv2`` package
(1.2.0) reloads the checkpoint at every ``score()`` call and scores one image per forward
pass; its ``score()`` also builds ViT-H-14 with LAION weights from the network, so this script
reproduces its per-call path (``torch.load`` + ``load_state_dict`` + its own transform, one
image at a time) with the package's vendored open_clip when it can be imported
(``pip install --no-deps --target DIR hpsv2`` and ``--hpsv2-path DIR``), on the same arch.
The 1.2.0 wheel lacks ``bpe_simple_vocab_16e6.txt.gz``: copy open_clip's into
``DIR/hpsv2/src/open_clip/`` first (the vendored tokenizer reads it at import).

    python benchmarks/rewards_vs_peers.py --arch ViT-B-32 --n 64 [--hpsv2-path /tmp/hpsv2pkg]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import rdbench.rewards as R


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(n)]


def _official_path(pkg: str, arch: str, ckpt: Path, images, prompt: str) -> tuple[float, list]:
    # import the vendored open_clip alone (hpsv2/__init__ pulls clint, requests, ...)
    import importlib.util

    root = Path(pkg) / "hpsv2" / "src" / "open_clip"
    spec = importlib.util.spec_from_file_location(
        "hpsv2_open_clip", root / "__init__.py", submodule_search_locations=[str(root)]
    )
    vendored = importlib.util.module_from_spec(spec)
    sys.modules["hpsv2_open_clip"] = vendored
    spec.loader.exec_module(vendored)
    create_model_and_transforms = vendored.create_model_and_transforms
    get_tokenizer = vendored.get_tokenizer

    model, _, preprocess = create_model_and_transforms(arch, None, device="cpu", output_dict=True)
    tokenizer = get_tokenizer(arch)
    start = time.perf_counter()
    scores = []
    for image in images:  # hpsv2.score(image, prompt): reload, then one image per pass
        model.load_state_dict(torch.load(ckpt, map_location="cpu")["state_dict"])
        model.eval()
        with torch.no_grad():
            out = model(preprocess(image)[None], tokenizer([prompt]))
            scores.append((out["image_features"] @ out["text_features"].T).item())
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip arch (real: ViT-H-14)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--hpsv2-path", default=None, help="folder with the hpsv2 package")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="comma-separated: float32,float16")
    args = parser.parse_args()

    import open_clip

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    ckpt = tmp / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": open_clip.create_model(args.arch).state_dict()}, ckpt)
    images, prompt = _images(args.n), "a photograph of an astronaut riding a horse"
    results = {
        "arch": args.arch,
        "n": args.n,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    ours = None
    for dtype in args.dtype.split(","):
        t0 = time.perf_counter()
        reward = R.load("hpsv2", device=args.device, dtype=dtype, weights=ckpt, arch=args.arch)
        results[f"rdbench_{dtype}_load_s"] = round(time.perf_counter() - t0, 2)
        reward.score(images[:2], prompt)  # warm-up
        for bs in (1, 8, 32):
            start = time.perf_counter()
            scores = reward.score(images, prompt, batch_size=bs)
            rate = args.n / (time.perf_counter() - start)
            results[f"rdbench_{dtype}_bs{bs}_img_per_s"] = round(rate, 2)
        if ours is None:
            ours = scores
        else:
            results[f"max_abs_diff_{dtype}_vs_first"] = float(np.abs(scores - ours).max())
        del reward
    if args.hpsv2_path:
        try:
            seconds, theirs = _official_path(args.hpsv2_path, args.arch, ckpt, images, prompt)
            results["hpsv2_pkg_img_per_s"] = round(args.n / seconds, 2)
            results["max_abs_diff_vs_hpsv2_pkg"] = float(np.abs(np.array(theirs) - ours).max())
        except Exception as exc:  # noqa: BLE001 - report why the peer could not run
            results["hpsv2_pkg_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
