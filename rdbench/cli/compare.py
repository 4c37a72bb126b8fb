"""``rdbench compare``: every set metric from two saved feature files."""

from __future__ import annotations

import click

from rdbench import defaults
from rdbench.cli._output import print_json, print_table
from rdbench.features_io import load_features
from rdbench.metrics.sets import MetricOptions, compute_set_metrics, parse_metric_names


@click.command("compare")
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("generated", type=click.Path(dir_okay=False))
@click.option(
    "--metrics",
    default=",".join(defaults.SET_METRICS),
    show_default=True,
    help="Comma-separated metrics to compute.",
)
@click.option(
    "--pr-k",
    default=defaults.PRECISION_RECALL_K,
    show_default=True,
    help="k of the k-NN radius for precision/recall.",
)
@click.option(
    "--dc-k",
    default=defaults.DENSITY_COVERAGE_K,
    show_default=True,
    help="k of the k-NN radius for density/coverage.",
)
@click.option(
    "--scd-top-k",
    type=int,
    default=None,
    help="Keep only the largest k eigenvalues in SCD (default: all).",
)
@click.option("--seed", default=defaults.SEED, show_default=True, help="Seed for KID subsets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(reference, generated, metrics, pr_k, dc_k, scd_top_k, seed, as_json):
    """Compare GENERATED features against REFERENCE features (.npy or .npz, shape N x d).

    REFERENCE is the base model's (or real) image features; GENERATED the features of the
    method under test. Lower is better for fid, kid and scd; higher for the others.
    """
    names = parse_metric_names(metrics)
    ref = load_features(reference)
    gen = load_features(generated)
    options = MetricOptions(pr_k=pr_k, dc_k=dc_k, scd_top_k=scd_top_k, seed=seed)
    values = compute_set_metrics(ref, gen, names, options)
    if as_json:
        print_json(
            {
                "reference": reference,
                "generated": generated,
                "n_reference": len(ref),
                "n_generated": len(gen),
                "metrics": values,
            }
        )
    else:
        print_table([{"metric": k, "value": v} for k, v in values.items()], ["metric", "value"])
