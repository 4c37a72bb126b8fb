"""``rdbench leaderboard``: run the Streamlit leaderboard app (``leaderboard/app.py``)."""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path

import click

from rdbench.errors import RdbenchError

STORE_ENV = "RDBENCH_LEADERBOARD_STORE"


def app_path() -> Path:
    """``leaderboard/app.py`` of the source checkout or of the installed package."""
    spec = find_spec("leaderboard")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    roots.append(Path(__file__).resolve().parents[2] / "leaderboard")
    for root in roots:
        if (root / "app.py").is_file():
            return root / "app.py"
    raise RdbenchError("leaderboard/app.py not found; run from an rdbench source checkout")


@click.command("leaderboard", context_settings={"ignore_unknown_options": True})
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Submissions folder to show [default: $RDBENCH_LEADERBOARD_STORE, else "
    "leaderboard/submissions].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8501,
    show_default=True,
    help="Port the Streamlit server listens on.",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def command(store: Path | None, port: int, address: str, streamlit_args: tuple[str, ...]) -> None:
    """Launch the leaderboard in Streamlit; extra arguments go to ``streamlit run``."""
    if find_spec("streamlit") is None:
        raise RdbenchError("the leaderboard needs streamlit: pip install 'rdbench[leaderboard]'")
    env = dict(os.environ)
    if store is not None:
        env[STORE_ENV] = str(store.resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path())]
    cmd += ["--server.port", str(port), "--server.address", address, *streamlit_args]
    click.echo(f"rdbench: serving the leaderboard on http://{address}:{port}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)  # become streamlit: signals reach the server directly
