"""Precision/recall/density/coverage: brute force, peer parity, conventions, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rdbench.errors import RdbenchError
from rdbench.metrics.manifold import PRDC, density_coverage, prdc, precision_recall


def brute_force(ref: np.ndarray, gen: np.ndarray, k: int) -> dict[str, float]:
    """The definitions written plainly with full distance matrices (closed balls, <=)."""

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    d_rr, d_gg, d_rg = dist(ref, ref), dist(gen, gen), dist(ref, gen)
    r_ref = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_gen = np.sort(d_gg, axis=1)[:, k]
    inside_ref = d_rg <= r_ref[:, None]  # [i, j]: gen j in ball of ref i
    return {
        "precision": inside_ref.any(axis=0).mean(),
        "recall": (d_rg <= r_gen[None, :]).any(axis=1).mean(),
        "density": inside_ref.sum() / (k * gen.shape[0]),
        "coverage": (d_rg.min(axis=1) <= r_ref).mean(),
    }


def _data(n: int, m: int, d: int, seed: int = 0, shift: float = 0.5):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, d))
    gen = rng.normal(size=(m, d)) * 1.2 + shift
    return ref, gen


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("batch_size", [7, 64, 4096])
def test_matches_brute_force(k, batch_size):
    ref, gen = _data(150, 120, 8, seed=k)
    expected = brute_force(ref, gen, k)
    got = prdc(ref, gen, k=k, batch_size=batch_size).to_dict()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert precision_recall(ref, gen, k, batch_size=batch_size) == (
        got["precision"],
        got["recall"],
    )
    assert density_coverage(ref, gen, k, batch_size=batch_size) == (
        got["density"],
        got["coverage"],
    )


def test_batch_size_invariance_on_larger_set():
    ref, gen = _data(700, 500, 32, seed=3, shift=0.2)
    results = {bs: prdc(ref, gen, batch_size=bs) for bs in (50, 256, 1000)}
    first = results[50]
    assert all(r == first for r in results.values())
    assert 0 < first.precision < 1 and 0 < first.recall < 1


def test_default_k_and_offset_from_large_mean():
    """Defaults are k=3 (P/R) and k=5 (D/C); a large common offset must not change anything."""
    ref, gen = _data(200, 180, 16, seed=5)
    out = prdc(ref, gen)
    assert (out.k_pr, out.k_dc) == (3, 5)
    pr, dc = brute_force(ref, gen, 3), brute_force(ref, gen, 5)
    assert (out.precision, out.recall) == pytest.approx((pr["precision"], pr["recall"]))
    assert (out.density, out.coverage) == pytest.approx((dc["density"], dc["coverage"]))
    shifted = prdc(ref + 1e4, gen + 1e4)
    assert shifted == out


def test_parity_with_prdc_package():
    prdc_pkg = pytest.importorskip("prdc")
    ref, gen = _data(400, 300, 24, seed=11, shift=0.3)
    theirs = prdc_pkg.compute_prdc(real_features=ref, fake_features=gen, nearest_k=5)
    ours = prdc(ref, gen, k=5).to_dict()
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-12), name


def test_parity_with_torch_fidelity():
    """torch-fidelity 0.4.0: features_1 = generated, features_2 = real; same names as ours."""
    metric_prc = pytest.importorskip("torch_fidelity.metric_prc")
    ref, gen = _data(300, 260, 16, seed=13, shift=0.4)
    p_tf, r_tf = metric_prc.calculate_precision_recall_full(
        torch.from_numpy(gen), torch.from_numpy(ref), neighborhood=3, batch_size=10000
    )
    precision, recall = precision_recall(ref, gen, k=3)
    assert precision != recall  # otherwise a swap would go unnoticed
    # torch-fidelity averages in float32: compare the counts of samples inside.
    assert round(precision * len(gen)) == round(p_tf * len(gen))
    assert round(recall * len(ref)) == round(r_tf * len(ref))


def test_mode_collapse_pins_convention():
    """All generated samples near one reference mode: high precision, low recall/coverage."""
    rng = np.random.default_rng(0)
    modes = rng.normal(size=(10, 16)) * 10.0
    ref = np.repeat(modes, 50, axis=0) + rng.normal(size=(500, 16))
    gen = modes[0] + 0.5 * rng.normal(size=(300, 16))  # a narrow part of one mode
    out = prdc(ref, gen)
    assert out.precision > 0.9
    assert out.recall < 0.15
    assert out.coverage < 0.15


def test_identical_sets_and_duplicates_versus_prdc_strict_inequality():
    prdc_pkg = pytest.importorskip("prdc")
    ref, _ = _data(200, 1, 8, seed=2)
    k = 5
    # Continuous set against itself: every k-th neighbour lies on the ball's boundary, which
    # <= counts and prdc's < does not: density (k + 1) / k here, exactly 1 in prdc.
    ours = prdc(ref, ref.copy(), k=k)
    theirs = prdc_pkg.compute_prdc(ref, ref.copy(), nearest_k=k)
    assert ours.density == pytest.approx((k + 1) / k)
    assert float(theirs["density"]) == pytest.approx(1.0)
    assert (ours.precision, ours.recall, ours.coverage) == (1.0, 1.0, 1.0)
    # Every point repeated more than k times: radii are 0, prdc scores 0 against itself
    # (prdc issue #7); closed balls still contain the copies.
    dup = np.repeat(ref[:10], 8, axis=0)
    ours = prdc(dup, dup.copy(), k=k)
    theirs = prdc_pkg.compute_prdc(dup, dup.copy(), nearest_k=k)
    assert all(float(v) == 0.0 for v in theirs.values())
    assert (ours.precision, ours.recall, ours.coverage) == (1.0, 1.0, 1.0)
    assert ours.density == pytest.approx(8 / k)


def test_inputs_are_not_modified_and_torch_inputs_work():
    ref, gen = _data(60, 50, 4, seed=1)
    ref32 = ref.astype(np.float32)
    before = ref.copy(), ref32.copy()
    a = prdc(ref, gen, k=3)
    b = prdc(torch.from_numpy(ref), torch.from_numpy(gen), k=3)
    ref32.flags.writeable = False  # read-only and float32 input are used without a copy
    assert prdc(ref32, gen, k=3) == prdc(ref32.astype(np.float64), gen, k=3)
    assert a == b
    np.testing.assert_array_equal(ref, before[0])
    np.testing.assert_array_equal(ref32, before[1])
    assert isinstance(a, PRDC) and set(a.to_dict()) >= {"precision", "density"}


GOOD = np.random.default_rng(0).normal(size=(10, 3))
BAD_INPUTS = {
    "nan": (np.where(np.eye(10, 3) > 0, np.nan, GOOD), GOOD, "NaN"),
    "inf": (GOOD, np.where(np.eye(10, 3) > 0, np.inf, GOOD), "infinite"),
    "1-D": (GOOD[:, 0], GOOD, "2-D"),
    "dims": (GOOD, GOOD[:, :2], "dimensions differ"),
    "fewer than k+1": (GOOD[:3], GOOD, "at least"),
    "single sample": (GOOD[:1], GOOD, "at least"),
}


@pytest.mark.parametrize("fn", [precision_recall, density_coverage, prdc])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(fn, case):
    ref, gen, message = BAD_INPUTS[case]
    with pytest.raises(RdbenchError, match=message):
        fn(ref, gen, k=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"backend": "sklearn"}, "backend"),
        ({"device": "nonsense"}, "device"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(RdbenchError, match=message):
        prdc(GOOD, GOOD, **kwargs)


def test_generated_needs_k_plus_one_only_for_recall():
    assert not math.isnan(density_coverage(GOOD, GOOD[:1], k=3)[0])
    with pytest.raises(RdbenchError, match="generated"):
        precision_recall(GOOD, GOOD[:3], k=3)


def test_faiss_backend():
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(RdbenchError, match="pip install faiss-cpu"):
            prdc(GOOD, GOOD, backend="faiss")
        return
    ref, gen = _data(150, 120, 8, seed=4)
    assert prdc(ref, gen, backend="faiss").to_dict() == pytest.approx(prdc(ref, gen).to_dict())


def test_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        ref, gen = _data(100, 90, 8)
        assert prdc(ref, gen, device="cuda") == prdc(ref, gen)
    else:
        with pytest.raises(RdbenchError, match="CUDA is not available"):
            prdc(GOOD, GOOD, device="cuda")


def test_prdc_separate_k_equals_the_single_metric_functions():
    rng = np.random.default_rng(11)
    ref, gen = rng.standard_normal((120, 6)), rng.standard_normal((90, 6)) + 0.3
    out = prdc(ref, gen, k_pr=4, k_dc=7)
    assert (out.precision, out.recall) == precision_recall(ref, gen, k=4)
    assert (out.density, out.coverage) == density_coverage(ref, gen, k=7)
    assert (out.k_pr, out.k_dc) == (4, 7)


# ------------------------------------------- float32 products with exact float64 decisions


def _float64_only(monkeypatch) -> None:
    from rdbench.metrics import manifold

    monkeypatch.setattr(manifold._Float32Error, "make", staticmethod(lambda *a, **k: None))


def _near_tie_sets(dtype, offset: float = 0.0):
    """Clusters on an integer lattice (exact ties) plus jitter that float64 resolves at
    these norms (squared distances >> 1e-12) and float32 products do not (<< 1e-4)."""
    rng = np.random.default_rng(21)
    lattice = rng.integers(0, 3, size=(30, 48)).astype(np.float64)
    jitter = 10.0 ** rng.uniform(-5, -3.5, size=(30 * 8, 1))
    ref = np.repeat(lattice, 8, axis=0) + jitter * rng.normal(size=(240, 48))
    gen = lattice[rng.integers(0, 30, size=200)] + 3e-5 * rng.normal(size=(200, 48))
    gen[::3] = np.round(gen[::3])  # exact copies of lattice points: ties with <=
    return (ref + offset).astype(dtype), (gen + offset).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_float32_products_give_the_float64_decisions_on_near_ties(monkeypatch, dtype, offset, k):
    from rdbench.metrics import manifold

    ref, gen = _near_tie_sets(dtype, offset)
    calls = {"pairs": 0, "rows": 0}
    pair, rows = manifold._pair_sq_dists, manifold._knn_rows64

    def count_pairs(x, y, i, j, *a):
        calls["pairs"] += i.numel()
        return pair(x, y, i, j, *a)

    def count_rows(x, idx, *a):
        calls["rows"] += idx.numel()
        return rows(x, idx, *a)

    monkeypatch.setattr(manifold, "_pair_sq_dists", count_pairs)
    monkeypatch.setattr(manifold, "_knn_rows64", count_rows)
    fast = {bs: prdc(ref, gen, k_pr=k, k_dc=k + 1, batch_size=bs) for bs in (17, 1024)}
    assert calls["pairs"] > 0  # float64 recomputation of near-threshold pairs exercised
    if k < 8:  # some lattice points have more than k + 8 generated copies, all closer
        assert calls["rows"] > 0  # than the float32 bound: such rows are redone in float64
    _float64_only(monkeypatch)
    exact = {bs: prdc(ref, gen, k_pr=k, k_dc=k + 1, batch_size=bs) for bs in (17, 64)}
    assert exact[17] == exact[64]  # float64 itself resolves this data
    assert fast[17] == exact[64] and fast[1024] == exact[64]


def test_float32_products_match_float64_and_brute_force_on_lattice(monkeypatch):
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 3, size=(300, 12)).astype(np.float64)  # many exact ties
    gen = rng.integers(0, 4, size=(250, 12)).astype(np.float64)
    fast = prdc(ref, gen, k=4, batch_size=100)
    expected = brute_force(ref, gen, 4)
    for name, value in expected.items():
        assert getattr(fast, name) == pytest.approx(value, abs=1e-12), name
    _float64_only(monkeypatch)
    assert prdc(ref, gen, k=4, batch_size=100) == fast


def test_float32_error_bound_holds_on_wide_features():
    from rdbench.metrics import manifold

    rng = np.random.default_rng(8)
    ref = (rng.normal(size=(64, 2048)) * 10.0 ** rng.uniform(-3, 3, size=(64, 1))).astype(
        np.float32
    )
    gen = ref[::-1] + np.float32(1e-3) * rng.normal(size=(64, 2048)).astype(np.float32)
    center = torch.from_numpy(ref.mean(axis=0, dtype=np.float64))
    x, y = manifold._Blocks(ref, center, 64), manifold._Blocks(gen, center, 64)
    nmax = float(torch.maximum(x.sq_norms.max(), y.sq_norms.max()))
    err = manifold._Float32Error.make(x, y, nmax)
    assert err is not None
    rows = slice(0, 64)
    scratch = torch.empty((3, 64 * 64), dtype=torch.float32)
    a, b = x.block32(rows, 0), y.block32(rows, 1)
    _, lo, hi = manifold._bounds32(
        a, b, rows, rows, err, err.nx32, err.ny32, err.cn_x, err.cn_y, scratch
    )
    d64 = torch.from_numpy(
        ((ref.astype(np.float64)[:, None, :] - gen.astype(np.float64)[None, :, :]) ** 2).sum(-1)
    )
    assert bool((lo.double() <= d64).all()) and bool((d64 <= hi.double()).all())


def test_reduced_precision_matmul_falls_back_to_float64():
    from rdbench.metrics import manifold

    ref, gen = _data(50, 40, 8)
    center = torch.zeros(8, dtype=torch.float64)
    x, y = manifold._Blocks(ref, center, 16), manifold._Blocks(gen, center, 16)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert manifold._Float32Error.make(x, y, 1.0) is None
    finally:
        torch.set_float32_matmul_precision(before)
    assert manifold._Float32Error.make(x, y, 1.0) is not None
    assert manifold._Float32Error.make(x, y, 1e38) is None  # float32 range


def test_one_far_outlier_does_not_change_other_decisions():
    """Radii were widened by the rounding bound of the largest norm in the data, so one point
    at 1e6 moved every ball (all four metrics wrong); the bound is now each ball's own."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 1.0
    y[0] = 1e6
    out = prdc(x, y, k=5, progress=False)
    dxx, dyy, dxy = cdist(x, x), cdist(y, y), cdist(x, y)
    np.fill_diagonal(dxx, np.inf)
    np.fill_diagonal(dyy, np.inf)
    rx, ry = np.sort(dxx, 1)[:, 4], np.sort(dyy, 1)[:, 4]
    inside = dxy <= rx[:, None]
    assert out.precision == inside.any(0).mean()
    assert out.recall == (dxy <= ry[None, :]).any(1).mean()
    assert out.density == inside.sum() / (5 * len(y))
    assert out.coverage == (dxy.min(1) <= rx).mean()
