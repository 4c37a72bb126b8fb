"""Defaults shared by the Python API and the CLI, so the two never disagree."""

from __future__ import annotations

# Manifold metrics (Kynkaanniemi et al. 2019; Naeem et al. 2020).
PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5

# KID (Binkowski et al. 2018), as in torch-fidelity.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000

# Bootstrap confidence intervals.
BOOTSTRAP_RESAMPLES = 1000
# Resamples for intervals of set metrics in `rdbench evaluate` (FID, precision, ...): each one
# recomputes the metric (FID at d=2048 takes about 0.3-1 s), so they are off unless asked for.
# Means over prompts (rewards, per-prompt diversity) always use BOOTSTRAP_RESAMPLES: cheap.
SET_BOOTSTRAP_RESAMPLES = 0
CONFIDENCE = 0.95
SEED = 0

# Feature extraction.
EXTRACTOR = "inception"
BATCH_SIZE = 64
NUM_WORKERS = 0

# Every set metric `rdbench compare` / `rdbench evaluate` can compute.
SET_METRICS = ("fid", "precision", "recall", "density", "coverage", "scd", "kid", "vendi")
