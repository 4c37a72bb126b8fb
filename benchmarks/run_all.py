"""Run every CPU benchmark script in this folder, one after the other (``make bench``).

``gpu_smoke.py`` needs a GPU and is left out. Each script runs rdbench and the peer library on
identical input in one process and prints the ratio; figures measured on a named machine are
recorded in ``benchmarks/README.md``.
Extra arguments (for example ``--quick``) are not forwarded: run a script directly for that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"run_all.py", "gpu_smoke.py"} or script.name.startswith("_"):
            continue
        print(f"==> {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
