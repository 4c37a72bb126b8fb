"""``rdbench demo``: the metrics on built-in synthetic features, offline, in seconds."""

from __future__ import annotations

import click

from rdbench import defaults
from rdbench.cli._output import print_json, print_table
from rdbench.metrics.sets import compute_set_metrics
from rdbench.synthetic import demo_sets


@click.command("demo")
@click.option("--n", default=2000, show_default=True, help="Samples per synthetic set.")
@click.option("--dim", default=64, show_default=True, help="Feature dimension.")
@click.option("--seed", default=defaults.SEED, show_default=True, help="Random seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(n, dim, seed, as_json):
    """Score three synthetic "generated" sets against an 8-mode Gaussian reference.

    fresh: a new sample of the reference distribution (an ideal model); partial: 3 of 8 modes
    at 0.7x spread (a regularised model); collapsed: one mode at 0.3x spread (reward hacking).
    """
    sets = demo_sets(n=n, dim=dim, seed=seed)
    reference = sets.pop("reference")
    rows = [{"set": name, **compute_set_metrics(reference, feats)} for name, feats in sets.items()]
    if as_json:
        print_json({"n": n, "dim": dim, "seed": seed, "rows": rows})
    else:
        print_table(rows, ["set", *defaults.SET_METRICS])
