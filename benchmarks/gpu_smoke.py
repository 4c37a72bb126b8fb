"""GPU smoke test of the SD baselines: an SD-1.4-sized random-weight UNet and VAE, no downloads.

Prints DRaFT-1 optimizer steps per second and peak GPU memory with and without gradient
checkpointing (UNet call checkpointed + VAE decoder blocks), and AIG sampling time relative to
plain sampling (target: at most 1.3x with one mixed forward; two passes cost about 2x) for
each mixing (row-scaled LoRA, peft adapter_names, two passes), next to plain sampling at twice
the batch. A few minutes on an H100; ``--quick`` about a minute. Without CUDA it runs the
tiny pipeline on the CPU (to check the script itself).

    python benchmarks/gpu_smoke.py [--quick] [--dtype bfloat16] [--batch 2] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.sd.bench import run_benchmark  # noqa: E402

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--batch", type=int, default=2, help="images per DRaFT micro-batch")
    parser.add_argument("--cpu", action="store_true", help="tiny pipeline on the CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    start = time.perf_counter()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
        size, device, dtype = "sd14", "cuda", DTYPES[args.dtype]
    else:
        print(f"no CUDA: tiny pipeline on the CPU ({platform.machine()})", flush=True)
        torch.set_num_threads(1)
        size, device, dtype = "tiny", "cpu", torch.float32
    figures = run_benchmark(
        size,
        device,
        dtype,
        batch=args.batch,
        num_steps=10 if args.quick else 25,
        draft_steps=2 if args.quick else 5,
        repeats=1 if args.quick else 3,
        rank=32 if cuda else 4,
    )
    figures["total_s"] = round(time.perf_counter() - start, 1)
    print(f"total {figures['total_s']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
