"""Speed of the SD baselines on the tiny random-weight pipeline, on the CPU.

DRaFT-1 optimizer steps per second with and without gradient checkpointing; sampling time of
AIG (one forward with row-scaled LoRA, one with peft's adapter_names, two passes) relative to
the finetuned model's plain sampling; the aten ops of one sampler step. See
:mod:`baselines.sd.bench`; ``benchmarks/gpu_smoke.py`` runs the same measurements on an
SD-1.x-sized UNet on a GPU.

    python benchmarks/baselines_speed.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.sd.bench import run_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} torch thread(s)")
    figures = run_benchmark(
        "tiny",
        "cpu",
        torch.float32,
        batch=2,
        num_steps=10 if args.quick else 25,
        draft_steps=2 if args.quick else 5,
        repeats=1 if args.quick else 3,
        rank=4,
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
