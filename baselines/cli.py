"""``python -m baselines``: the toy study (``demo``) and the Stable Diffusion commands."""

from __future__ import annotations

import time
from pathlib import Path

import click

from baselines.sd.commands import COMMANDS as SD_COMMANDS
from rdbench.cli import run_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Reward-finetuning baselines built on rdbench."""


@cli.command()
@click.option("--quick", is_flag=True, help="Small budgets (under a minute), for tests.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="demo_out",
    show_default=True,
    help="Output folder (results/, plots, summary.json).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of every random draw in the study."
)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def demo(quick: bool, out: Path, seed: int, progress: bool) -> None:
    """Run the toy study: Lemma-1 curve, KL / LoRA-scale / AIG frontiers, result files."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: threads only add contention
    try:
        _run_demo(quick, out, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _run_demo(quick: bool, out: Path, seed: int, progress: bool) -> None:
    from baselines.toy.plots import frontier_plot, lemma1_plot, ring_plot
    from baselines.toy.study import StudyConfig, dump_summary, ring_pictures, run_study, table

    config = StudyConfig.quick(seed) if quick else StudyConfig(seed=seed)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    study = run_study(config, out, progress=progress, log=lambda s: click.echo(s, err=True))
    frontier_plot(study, out / "frontier.png")
    lemma1_plot(study, out / "lemma1.png")
    ring_start = time.perf_counter()
    ring_plot(*ring_pictures(config, out, progress), out / "ring.png")
    study.timings["ring"] = round(time.perf_counter() - ring_start, 2)
    study.timings["total"] = round(time.perf_counter() - start, 2)
    dump_summary(study, out / "summary.json")
    click.echo(table(study))
    click.echo("")
    for axis, d in study.dominance.items():
        hv = ", ".join(f"{k} {v:.4f}" for k, v in d["hypervolume"].items())
        share = ", ".join(f"{k} {v:.0%}" for k, v in d["share_dominated_by_aig"].items())
        click.echo(
            f"[{axis}] hypervolume: {hv}; points dominated by AIG: {share}; "
            f"AIG largest: {d['aig_has_largest_hypervolume']}"
        )
    click.echo(
        f"wrote {out}/results/*.json, frontier.png, lemma1.png, ring.png, summary.json "
        f"in {study.timings['total']:.0f} s"
    )


for _command in SD_COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """``python -m baselines``: errors are one line and exit code 2, as for ``rdbench``."""
    run_cli(cli, argv, "python -m baselines")
