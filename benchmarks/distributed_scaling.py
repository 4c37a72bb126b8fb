"""Images per second of feature extraction with 1 vs N torchrun processes, and the efficiency.

Usage: ``python benchmarks/distributed_scaling.py [--n 256] [--size 256] [--nprocs 1,2]
[--batch-size 32] [--workers 0] [--full] [--repeats 2] [--device cpu|cuda]
[--threads-per-process T]``.

For each process count N it launches ``python -m torch.distributed.run --standalone
--nproc_per_node N`` on this file's worker, which runs
:func:`rdbench.distributed.distributed_extract` (shard, extract, agree, gather to rank 0) with
the cache off over ``--n`` procedurally drawn PNGs (``tests/imagegen.make_plain_folder``) and
a random-weight Inception-shaped TorchScript extractor (``tests/tiny_models.make_inception``;
tiny convolutions by default, torchvision's real-size Inception-v3 body with ``--full``).
The timed phase starts and ends at a barrier, after one untimed warm-up pass (TorchScript
profiles its first calls); the best of ``--repeats`` is kept. ``wall_s`` is the whole
``torchrun`` command (Python and torch start-up, model load), for reference.

On CPU each process gets ``cores // N`` intra-op threads (at least 1; ``--threads-per-process``
fixes it), so N processes never use more cores than one process; efficiency = (images/s with N) / (N x images/s with 1).
On GPUs each process uses ``cuda:<local_rank>``; N is capped at the GPU count. Ranks take
whole batches (blocks of ``--batch-size`` images), so keep ``n / batch_size`` a multiple of N
for a balanced split (the defaults give 8 batches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _worker(args: argparse.Namespace) -> None:
    import torch

    from rdbench import distributed
    from rdbench.features import load_extractor
    from rdbench.imageset import ImageSet

    torch.set_num_threads(args.threads)
    ctx = distributed.context()
    device = ctx.device(args.device) or args.device
    extractor = load_extractor("inception", weights=args.weights, device=device)
    images = ImageSet.open(args.images)
    options = {
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "cache": False,
        "progress": False,
    }

    def barrier() -> None:
        if torch.cuda.is_available() and device and device.startswith("cuda"):
            torch.cuda.synchronize()
        if ctx.active:
            torch.distributed.barrier()

    distributed.distributed_extract(images, extractor, **options)  # warm-up
    best = float("inf")
    rows = 0
    for _ in range(args.repeats):
        barrier()
        start = time.perf_counter()
        feats = distributed.distributed_extract(images, extractor, **options)
        barrier()
        best = min(best, time.perf_counter() - start)
        rows = len(feats.keys) if feats is not None else rows
    if ctx.is_main:
        Path(args.out).write_text(json.dumps({"seconds": best, "rows": rows}))


def _launch(nproc: int, threads: int, common: list[str], out: Path) -> tuple[dict, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(nproc), __file__, "--worker", "--out", str(out)]
    cmd += ["--threads", str(threads), *common]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"torchrun with {nproc} process(es) failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text()), wall


def run(
    n: int = 256,
    size: int = 256,
    nprocs: tuple[int, ...] = (1, 2),
    batch_size: int = 32,
    workers: int = 0,
    full: bool = False,
    repeats: int = 2,
    device: str | None = None,
    threads: int | None = None,
) -> dict:
    """Time extraction for each process count; return images/s and efficiency vs 1 process."""
    import torch

    sys.path.insert(0, str(TESTS))
    from imagegen import make_plain_folder
    from tiny_models import make_inception

    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    cores = os.cpu_count() or 1
    if cuda:
        nprocs = tuple(p for p in nprocs if p <= torch.cuda.device_count())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_inception(Path(tmp) / "weights", full=full)
        folder = make_plain_folder(Path(tmp) / "images", n, size=(size, size))
        common = ["--images", str(folder), "--weights", str(weights)]
        common += ["--batch-size", str(batch_size), "--workers", str(workers)]
        common += ["--repeats", str(repeats), "--device", "cuda" if cuda else "cpu"]
        for nproc in nprocs:
            per_proc = threads or max(1, cores // nproc)
            timed, wall = _launch(nproc, per_proc, common, Path(tmp) / f"out{nproc}.json")
            if timed["rows"] != n:
                sys.exit(f"{nproc} process(es) returned {timed['rows']} rows, expected {n}")
            rows.append(
                {
                    "processes": nproc,
                    "threads_per_process": None if cuda else per_proc,
                    "seconds": round(timed["seconds"], 3),
                    "images_per_s": round(n / timed["seconds"], 1),
                    "wall_s": round(wall, 1),
                }
            )
    base = next((r["images_per_s"] for r in rows if r["processes"] == 1), None)
    for r in rows:
        r["speedup"] = round(r["images_per_s"] / base, 2) if base else None
        r["efficiency"] = round(r["images_per_s"] / (base * r["processes"]), 2) if base else None
    return {
        "device": "cuda" if cuda else f"cpu ({cores} cores)",
        "n_images": n,
        "image_size": size,
        "extractor": "inception (real-size, random)" if full else "inception (tiny, random)",
        "batch_size": batch_size,
        "num_workers": workers,
        "torch": torch.__version__,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nprocs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="real-size Inception-v3 body")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--threads-per-process", type=int, default=None, help="default: cores // processes"
    )
    # worker mode (started by torchrun)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    nprocs = tuple(int(p) for p in args.nprocs.split(",") if p.strip())
    report = run(
        args.n, args.size, nprocs, args.batch_size, args.workers, args.full, args.repeats,
        args.device, args.threads_per_process,
    )  # fmt: skip
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
