"""k-NN manifold metrics: improved precision/recall and density/coverage.

Notation: reference set X = {x_i}, i = 1..N (e.g. base-model or real images), generated set
Y = {y_j}, j = 1..M. r_k(x_i) is the distance from x_i to its k-th nearest neighbour in X,
the point itself excluded; B(x_i, r) is the closed ball {z : ||z - x_i|| <= r}.

- Precision (Kynkaanniemi et al. 2019): fraction of y_j inside the reference manifold
  U_i B(x_i, r_k(x_i)). Recall: fraction of x_i inside the generated manifold
  U_j B(y_j, r_k(y_j)). Higher is better for both; a mode-collapsed generator has high
  precision and low recall. (torch-fidelity 0.4.0 follows the same convention; some older
  versions swapped the two names, torch-fidelity issue #58.)
- Density (Naeem et al. 2020): (1 / (k M)) sum_j sum_i 1[y_j in B(x_i, r_k(x_i))], about 1 when
  Y and X come from the same distribution. Coverage: (1 / N) sum_i 1[min_j ||x_i - y_j|| <=
  r_k(x_i)].

Ties: membership uses ``<=`` (closed balls), as the papers write it. The ``prdc`` package uses
a strict ``<``: a set in which every point has more than k exact duplicates gets radius 0 and
prdc scores 0 on all four metrics even against itself (prdc issue #7); rdbench scores 1 for
precision, recall and coverage. On continuous data the two agree.

Computation: squared Euclidean distances in float64 by blocks of ``batch_size`` rows
(||a||^2 + ||b||^2 - 2 a.b on data centred at the reference mean), running top-k for the
radii, and membership tests block by block, so memory is O((N + M) d + batch_size^2) instead
of the O(N M) distance matrices of prdc. Radii are widened by the rounding bound of that
formula near the ball (about 1e-12 of the centre's squared norm and the radius, ``_widened``)
so that exact ties and duplicates count as inside whatever the block layout; results do not
depend on ``batch_size``.

On CPU (and CUDA without TF32) the block products run in float32, about twice as fast, and
the decisions stay those of float64: with a rigorous bound E on |d2_float32 - d2_float64|
(input rounding plus gamma_d for any summation order, about d * 6e-8 of the squared norms),
only comparisons within E of a radius are recomputed in float64, and each k-NN radius is
the float64 distance of the candidates within 2E of the float32 k-th one, taken from a
running top-(k + 8) with indices (a row whose (k + 8)-th candidate is still within reach is
redone in float64). Reduced-precision float32 matmuls or features beyond the float32 range
use the float64 blocks throughout.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.metrics._checks import (
    as_features,
    check_finite,
    check_positive_int,
    check_same_dim,
)

Backend = Literal["torch", "faiss"]
DEFAULT_BATCH_SIZE = 1024
_EPS = float(np.finfo(np.float64).eps)
_U32 = 2.0**-24  # unit roundoff of float32
_KNN_EXTRA = 8  # float32 k-NN keeps k + _KNN_EXTRA candidates per row


@dataclass(frozen=True)
class PRDC:
    """Precision, recall (k = ``k_pr``), density and coverage (k = ``k_dc``)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def precision_recall(
    reference: Any,
    generated: Any,
    k: int = defaults.PRECISION_RECALL_K,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    backend: Backend = "torch",
    progress: bool | None = None,
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), see the module docstring.

    ``reference`` (N, d) and ``generated`` (M, d) need N, M >= k + 1. Returns
    ``(precision, recall)``, both in [0, 1], higher is better.
    """
    out = _compute(reference, generated, k, None, batch_size, device, backend, progress)
    return out["precision"], out["recall"]


def density_coverage(
    reference: Any,
    generated: Any,
    k: int = defaults.DENSITY_COVERAGE_K,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    backend: Backend = "torch",
    progress: bool | None = None,
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), see the module docstring.

    Only the reference set needs radii: N >= k + 1, M >= 1. Returns ``(density, coverage)``;
    density is in [0, N / k] (about 1 for matching distributions), coverage in [0, 1].
    """
    out = _compute(reference, generated, None, k, batch_size, device, backend, progress)
    return out["density"], out["coverage"]


def prdc(
    reference: Any,
    generated: Any,
    k: int | None = None,
    *,
    k_pr: int | None = None,
    k_dc: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    backend: Backend = "torch",
    progress: bool | None = None,
) -> PRDC:
    """All four manifold metrics in one pass over the distances.

    With ``k`` given, all four use it (as ``prdc.compute_prdc(real, fake, nearest_k=k)``);
    with ``k=None``, precision/recall use k = 3 and density/coverage k = 5 (the papers'
    defaults, ``rdbench.defaults``). ``k_pr`` / ``k_dc`` set the two separately.
    """
    if k_pr is None:
        k_pr = defaults.PRECISION_RECALL_K if k is None else k
    if k_dc is None:
        k_dc = defaults.DENSITY_COVERAGE_K if k is None else k
    out = _compute(reference, generated, k_pr, k_dc, batch_size, device, backend, progress)
    return PRDC(k_pr=k_pr, k_dc=k_dc, **out)


# ---------------------------------------------------------------------------- internals


class _Blocks:
    """A feature set kept as given (float32 or float64, no copy on CPU), served as float64
    row blocks centred at ``center``; float32 -> float64 is exact, so every block holds the
    same numbers whatever the block layout. Blocks are written into two reused buffers
    (``slot`` 0 and 1): a block is valid until the next request for the same slot."""

    def __init__(self, arr: np.ndarray, center: torch.Tensor, batch_size: int) -> None:
        with warnings.catch_warnings():  # read-only input is fine: it is never written
            warnings.simplefilter("ignore", UserWarning)
            self.data = torch.from_numpy(arr).to(center.device)
        self.center = center
        self.batch_size = batch_size
        self.n, self.d = arr.shape
        size = min(batch_size, self.n) * self.d
        self._buffers = torch.empty((2, size), dtype=torch.float64, device=center.device)
        self._buffers32 = torch.empty((2, size), dtype=torch.float32, device=center.device)
        self.sq_norms = torch.cat([_row_sq_norms(b) for _, b in self])

    def block32(self, rows: slice, slot: int = 1) -> torch.Tensor:
        """The float64 centred block rounded to float32 (one rounding per entry)."""
        b = self.block(rows, slot)
        return self._buffers32[slot, : b.numel()].view(b.shape).copy_(b)

    def iter32(self) -> Iterator[tuple[slice, torch.Tensor]]:
        for i in range(0, self.n, self.batch_size):
            rows = slice(i, i + self.batch_size)
            yield rows, self.block32(rows, slot=0)

    def rows64(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data[idx].to(torch.float64).sub_(self.center)  # same values as block()

    def block(self, rows: slice, slot: int = 1) -> torch.Tensor:
        source = self.data[rows]
        out = self._buffers[slot, : source.numel()].view(source.shape)
        return out.copy_(source).sub_(self.center)

    def __iter__(self) -> Iterator[tuple[slice, torch.Tensor]]:
        for i in range(0, self.n, self.batch_size):
            rows = slice(i, i + self.batch_size)
            yield rows, self.block(rows, slot=0)


def _row_sq_norms(a: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    return torch.cat([c.square().sum(dim=1) for c in a.split(chunk)])


def _compute(
    reference: Any,
    generated: Any,
    k_pr: int | None,
    k_dc: int | None,
    batch_size: int,
    device: str | torch.device,
    backend: str,
    progress: bool | None,
) -> dict[str, float]:
    ks = [check_positive_int(k, "k") for k in (k_pr, k_dc) if k is not None]
    batch_size = check_positive_int(batch_size, "batch_size")
    if backend not in ("torch", "faiss"):
        raise RdbenchError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    dev = _resolve_device(device)
    k_ref = max(ks)
    ref_np = _as_feature_array(reference, "reference", min_samples=k_ref + 1)
    gen_np = _as_feature_array(generated, "generated", 1 if k_pr is None else k_pr + 1)
    check_same_dim(ref_np, gen_np, "reference", "generated")

    center = torch.from_numpy(ref_np.mean(axis=0, dtype=np.float64)).to(dev)
    x, y = _Blocks(ref_np, center, batch_size), _Blocks(gen_np, center, batch_size)
    # Rounding bound of ||a||^2 + ||b||^2 - 2 a.b, counted twice (radius and query distance).
    scale = 2.0 * (ref_np.shape[1] + 4) * _EPS
    nmax = float(torch.maximum(x.sq_norms.max(), y.sq_norms.max()))

    err = _Float32Error.make(x, y, nmax)
    knn32 = backend != "faiss" and err is not None
    if backend == "faiss":
        knn = _knn_sq_distances_faiss
    elif err is not None:
        knn = functools.partial(_knn_sq_distances32, err=err)
    else:
        knn = _knn_sq_distances
    bar = _progress(x.n, y.n, batch_size, k_pr is not None, progress)
    with bar:
        needed = tuple(k for k in (k_pr, k_dc) if k is not None)
        ref_knn = knn(x, k_ref, bar, **({"need": needed} if knn32 else {}))
        r_pr = _widened(ref_knn[:, k_pr - 1], x.sq_norms, scale) if k_pr is not None else None
        r_dc = _widened(ref_knn[:, k_dc - 1], x.sq_norms, scale) if k_dc is not None else None
        if k_pr == k_dc:
            r_dc = r_pr  # one comparison per block serves all four metrics
        r_gen = None
        if k_pr is not None:
            gen_knn = knn(y, k_pr, bar, **({"need": (k_pr,)} if knn32 else {}))
            r_gen = _widened(gen_knn[:, k_pr - 1], y.sq_norms, scale)
        if err is not None:
            return _cross_sweep32(x, y, r_pr, r_dc, r_gen, k_dc, bar, err)
        return _cross_sweep(x, y, r_pr, r_dc, r_gen, k_dc, bar)


def _widened(r: torch.Tensor, sq_norms: torch.Tensor, scale: float) -> torch.Tensor:
    """Squared radii ``r`` of centres with squared norms ``sq_norms``, plus the rounding bound
    ``scale (||a||^2 + ||b||^2)`` of the radius and of a query distance near it.

    Only points near a ball's boundary need it, and those are close to the centre a: with
    ||b||^2 <= 2 ||a||^2 + 2 r for the k-th neighbour and for a query at distance ~r, the bound
    is below ``scale (3 ||a||^2 + 2 r)`` (with slack: 3 r). Unlike the largest norm of the
    data, this does not let one far outlier widen every ball."""
    return r + scale * (3.0 * sq_norms + 3.0 * r.clamp(min=0.0))


def _cross_sweep(
    x: _Blocks,
    y: _Blocks,
    r_pr: torch.Tensor | None,
    r_dc: torch.Tensor | None,
    r_gen: torch.Tensor | None,
    k_dc: int | None,
    bar: tqdm,
) -> dict[str, float]:
    """One pass over the N x M reference-generated distances, block by block."""
    members = _Membership(x, y, r_pr, r_dc, k_dc)
    scratch = _scratch(x, y)
    for rows, a in x:
        for cols, b in y:
            d2 = _sq_dists(a, x.sq_norms[rows], b, y.sq_norms[cols], scratch)
            inside_pr = in_gen = inside_dc = None
            if r_pr is not None:
                inside_pr = d2 <= r_pr[rows, None]
                in_gen = d2 <= r_gen[None, cols]
            if r_dc is not None:
                inside_dc = inside_pr if members.shared else d2 <= r_dc[rows, None]
            members.add(rows, cols, inside_pr, in_gen, inside_dc)
            bar.update(1)
    return members.summary()


class _Membership:
    """The membership counts both sweeps (float64, float32) collect, block by block.

    ``shared`` (the same k for both pairs of metrics): precision is ``ball_count > 0``, one
    reduction less per block.
    """

    def __init__(
        self,
        x: _Blocks,
        y: _Blocks,
        r_pr: torch.Tensor | None,
        r_dc: torch.Tensor | None,
        k_dc: int | None,
    ) -> None:
        dev = x.center.device
        self.with_pr, self.with_dc, self.shared = r_pr is not None, r_dc is not None, r_dc is r_pr
        self.k_dc, self.m = k_dc, y.n
        self.gen_in_ref = torch.zeros(y.n, dtype=torch.bool, device=dev)  # precision
        self.ref_in_gen = torch.zeros(x.n, dtype=torch.bool, device=dev)  # recall
        self.ball_count = torch.zeros(y.n, dtype=torch.int64, device=dev)  # density
        self.ref_covered = torch.zeros(x.n, dtype=torch.bool, device=dev)  # coverage

    def add(
        self,
        rows: slice,
        cols: slice,
        inside_pr: torch.Tensor | None,
        in_gen: torch.Tensor | None,
        inside_dc: torch.Tensor | None,
    ) -> None:
        """[i, j] blocks: y_j in B(x_i, r_pr), x_i in B(y_j, r_gen), y_j in B(x_i, r_dc)."""
        if inside_pr is not None:
            if not self.shared:
                self.gen_in_ref[cols] |= inside_pr.any(dim=0)
            self.ref_in_gen[rows] |= in_gen.any(dim=1)
        if inside_dc is not None:
            self.ball_count[cols] += inside_dc.sum(dim=0)
            self.ref_covered[rows] |= inside_dc.any(dim=1)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.with_pr:
            inside = self.ball_count > 0 if self.shared else self.gen_in_ref
            out["precision"] = inside.double().mean().item()
            out["recall"] = self.ref_in_gen.double().mean().item()
        if self.with_dc:
            out["density"] = self.ball_count.sum().item() / (self.k_dc * self.m)
            out["coverage"] = self.ref_covered.double().mean().item()
        return out


@dataclass(frozen=True)
class _Float32Error:
    """Rigorous bound on |d2_32 - d2_64| for the float32 block distances.

    d2_32 = fl32(fl32(||b||^2 - 2 a32.b32) + ||a||^2) with a32, b32 the centred float64
    blocks rounded to float32 and the norms rounded to float32; d2_64 is the float64 value
    of ``_sq_dists``. Rounding the inputs costs (2u + u^2) ||a|| ||b|| on the dot product,
    any summation order (BLAS blocking, FMA) gamma_d (1 + u)^2 ||a|| ||b|| (Higham, Thm 3.5
    form), the norms and the two additions (and the later +-E) a few u (||a||^2 + ||b||^2);
    float64 adds (d + 4) eps64 (||a||^2 + ||b||^2). With 2 ||a|| ||b|| <= ||a||^2 + ||b||^2
    the whole is below ``coef`` (||a||^2 + ||b||^2) + ``absolute`` (underflow), with a 10 %
    margin. Only used where fp32 matmuls are plain IEEE float32 (no TF32 / bf16)."""

    coef: float
    absolute: float
    cn_x: torch.Tensor  # coef * ||x_i||^2 + absolute / 2, float32 rounded up
    cn_y: torch.Tensor
    nx32: torch.Tensor  # squared norms as float32
    ny32: torch.Tensor

    @staticmethod
    def make(x: _Blocks, y: _Blocks, nmax: float) -> _Float32Error | None:
        dev = x.center.device
        if not _ieee_float32_matmul(dev):
            return None
        if not 16.0 * nmax < 1e37:  # float32 range, with room for radii and bounds
            return None
        d, u = x.d, _U32
        gamma = d * u / (1.0 - d * u)
        coef = 1.1 * ((2 * u + u * u) + gamma * (1 + u) ** 2 + 8 * u + 2 * (d + 4) * _EPS)
        absolute = 2.0**-144 * (2.0 * np.sqrt(d * max(nmax, 1.0)) + 2.0 * d)

        def up32(v: torch.Tensor) -> torch.Tensor:
            v32 = v.float()
            return torch.nextafter(v32, torch.full_like(v32, float("inf")))

        return _Float32Error(
            coef=coef,
            absolute=absolute,
            cn_x=up32(coef * x.sq_norms + absolute / 2),
            cn_y=up32(coef * y.sq_norms + absolute / 2),
            nx32=x.sq_norms.float(),
            ny32=y.sq_norms.float(),
        )

    def row_bound(self, n_a: torch.Tensor, nmax: float) -> torch.Tensor:
        """float64 bound for row a against any column: coef (||a||^2 + nmax) + absolute."""
        return self.coef * (n_a + nmax) + self.absolute


def _ieee_float32_matmul(dev: torch.device) -> bool:
    """Whether float32 matmuls on ``dev`` are plain IEEE float32 (no TF32 / bf16 inside)."""
    if dev.type not in ("cpu", "cuda"):
        return False
    try:  # the legacy API raises once the new one below has been used
        if torch.get_float32_matmul_precision() != "highest":
            return False
        if dev.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
            return False
    except RuntimeError:
        pass
    backend = torch.backends.cuda if dev.type == "cuda" else torch.backends.mkldnn
    settings = [  # the per-backend API of recent torch; absent attributes are fine
        getattr(torch.backends, "fp32_precision", None),
        getattr(getattr(backend, "matmul", None), "fp32_precision", None),
    ]
    return all(p in (None, "none", "ieee") for p in settings)


def _pair_sq_dists(
    x: _Blocks, y: _Blocks, i: torch.Tensor, j: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """float64 ||x_i - y_j||^2 for index pairs, by the same formula as ``_sq_dists``."""
    out = torch.empty(i.numel(), dtype=torch.float64, device=x.center.device)
    for s in range(0, i.numel(), chunk):
        ii, jj = i[s : s + chunk], j[s : s + chunk]
        dot = torch.linalg.vecdot(x.rows64(ii), y.rows64(jj))
        out[s : s + chunk] = (y.sq_norms[jj] - 2.0 * dot + x.sq_norms[ii]).clamp_(min=0.0)
    return out


def _thresholds32(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 values just below and just above the float64 thresholds ``t``."""
    t32 = t.float()
    down = torch.nextafter(t32, torch.full_like(t32, float("-inf")))
    up = torch.nextafter(t32, torch.full_like(t32, float("inf")))
    return down, up


def _cross_sweep32(
    x: _Blocks,
    y: _Blocks,
    r_pr: torch.Tensor | None,
    r_dc: torch.Tensor | None,
    r_gen: torch.Tensor | None,
    k_dc: int | None,
    bar: tqdm,
    err: _Float32Error,
) -> dict[str, float]:
    """``_cross_sweep`` with float32 block products; same decisions as the float64 one."""
    dev = x.center.device
    members = _Membership(x, y, r_pr, r_dc, k_dc)
    t_pr = _thresholds32(r_pr) if r_pr is not None else None
    t_dc = _thresholds32(r_dc) if r_dc is not None else None
    t_gen = _thresholds32(r_gen) if r_gen is not None else None
    size = min(x.batch_size, x.n) * min(y.batch_size, y.n)
    scratch = torch.empty((3, size), dtype=torch.float32, device=dev)
    for rows, a in x.iter32():
        for cols, b in y.iter32():
            d2, lo, hi = _bounds32(
                a, b, rows, cols, err, err.nx32, err.ny32, err.cn_x, err.cn_y, scratch
            )

            def fix(i: torch.Tensor, j: torch.Tensor, rows=rows, cols=cols) -> torch.Tensor:
                return _pair_sq_dists(x, y, i + rows.start, j + cols.start)

            def row_test(t, t64, rows=rows, lo=lo, hi=hi, fix=fix):
                return _inside_rows(lo, hi, t[0][rows], t[1][rows], t64[rows], fix)

            inside_pr = in_gen = inside_dc = None
            if r_pr is not None:
                inside_pr = row_test(t_pr, r_pr)
                in_gen = _inside_cols(lo, hi, t_gen[0][cols], t_gen[1][cols], r_gen[cols], fix)
            if r_dc is not None:
                inside_dc = inside_pr if members.shared else row_test(t_dc, r_dc)
            members.add(rows, cols, inside_pr, in_gen, inside_dc)
            bar.update(1)
    return members.summary()


def _inside_rows(lo, hi, t_down, t_up, t64, fix):
    """[i, j]: d2_64(i, j) <= t64[i]."""
    inside = hi <= t_down[:, None]
    maybe = lo <= t_up[:, None]
    if not torch.equal(inside, maybe):
        i, j = torch.nonzero(maybe & ~inside, as_tuple=True)
        inside[i, j] = fix(i, j) <= t64[i]
    return inside


def _inside_cols(lo, hi, t_down, t_up, t64, fix):
    """[i, j]: d2_64(i, j) <= t64[j]."""
    inside = hi <= t_down[None, :]
    maybe = lo <= t_up[None, :]
    if not torch.equal(inside, maybe):
        i, j = torch.nonzero(maybe & ~inside, as_tuple=True)
        inside[i, j] = fix(i, j) <= t64[j]
    return inside


def _bounds32(a, b, rows, cols, err, na32, nb32, cna, cnb, scratch):
    """float32 d2 block and bounds lo <= d2_64 <= hi (from the rounding bound of ``err``)."""
    m = a.shape[0] * b.shape[0]
    d2, lo, hi = (scratch[s, :m].view(a.shape[0], b.shape[0]) for s in range(3))
    torch.addmm(nb32[cols][None, :], a, b.T, alpha=-2.0, out=d2)
    d2.add_(na32[rows][:, None])
    e = torch.add(cna[rows][:, None], cnb[cols][None, :], out=hi)
    torch.sub(d2, e, out=lo)
    hi.add_(d2)
    return d2, lo, hi


def _knn_sq_distances32(
    x: _Blocks, k: int, bar: tqdm, err: _Float32Error, need: tuple[int, ...] = ()
) -> torch.Tensor:
    """``_knn_sq_distances`` with float32 block products and exact float64 radii.

    Keeps the K = k + _KNN_EXTRA nearest other rows by float32 distance (with indices). With E
    the rounding bound of the row, candidates within 2E of the k-th float32 value are
    recomputed in float64 and those below that window counted; a row whose K-th float32
    value is not beyond the window (near ties), is redone fully in float64. Returns (n, k),
    filled only in the columns ``need`` (all-NaN elsewhere).
    """
    dev = x.center.device
    big_k = min(k + _KNN_EXTRA, x.n - 1)
    best_v = torch.full((x.n, big_k), float("inf"), dtype=torch.float32, device=dev)
    best_i = torch.zeros((x.n, big_k), dtype=torch.int64, device=dev)
    n32 = x.sq_norms.float()
    size = min(x.batch_size, x.n) ** 2
    scratch = torch.empty((3, size), dtype=torch.float32, device=dev)
    for rows, a in x.iter32():
        for j in range(rows.start, x.n, x.batch_size):
            cols = slice(j, j + x.batch_size)
            b = x.block32(cols)
            m = a.shape[0] * b.shape[0]
            d2 = scratch[0, :m].view(a.shape[0], b.shape[0])
            torch.addmm(n32[cols][None, :], a, b.T, alpha=-2.0, out=d2)
            d2.add_(n32[rows][:, None])
            if cols == rows:
                d2.fill_diagonal_(float("inf"))
            _merge_smallest_idx(best_v, best_i, rows, d2, cols.start, dim=1)
            if cols != rows:
                _merge_smallest_idx(best_v, best_i, cols, d2, rows.start, dim=0)
            bar.update(1)
    best_v, order = best_v.sort(dim=1)
    best_i = best_i.gather(1, order)
    nmax = float(x.sq_norms.max())
    e = err.row_bound(x.sq_norms, nmax)[:, None]  # float64 (n, 1)
    v = best_v.double()
    out = torch.full((x.n, k), float("nan"), dtype=torch.float64, device=dev)
    for kk in sorted(set(need) if need else {k}):
        vk = v[:, kk - 1 : kk]
        below = v < vk - 2 * e
        window = ~below & (v <= vk + 2 * e)
        full = torch.full_like(v, float("inf"))
        full[below] = float("-inf")
        i, c = torch.nonzero(window, as_tuple=True)
        full[i, c] = _pair_sq_dists(x, x, i, best_i[i, c])
        out[:, kk - 1] = full.sort(dim=1).values[:, kk - 1]
        if big_k < x.n - 1:
            redo = torch.nonzero(~(v[:, -1] > vk[:, 0] + 2 * e[:, 0])).squeeze(1)
            if redo.numel():
                out[redo, kk - 1] = _knn_rows64(x, redo, kk)
    return out


def _knn_rows64(x: _Blocks, idx: torch.Tensor, k: int) -> torch.Tensor:
    """float64 k-th nearest-other squared distance for the rows ``idx``."""
    out = torch.empty(idx.numel(), dtype=torch.float64, device=x.center.device)
    chunk = max(1, min(x.batch_size, x.n) ** 2 // x.n)  # (chunk, n) within a block's size
    for s in range(0, idx.numel(), chunk):
        ii = idx[s : s + chunk]
        a = x.rows64(ii)
        na = x.sq_norms[ii]
        d2 = torch.empty((ii.numel(), x.n), dtype=torch.float64, device=x.center.device)
        for cols, b in x:
            torch.addmm(x.sq_norms[cols][None, :], a, b.T, alpha=-2.0, out=d2[:, cols])
        d2.add_(na[:, None]).clamp_(min=0.0)
        d2[torch.arange(ii.numel(), device=d2.device), ii] = float("inf")
        out[s : s + chunk] = d2.kthvalue(k, dim=1).values
    return out


def _merge_smallest_idx(
    best_v: torch.Tensor, best_i: torch.Tensor, rows: slice, d2: torch.Tensor, offset: int, dim: int
) -> None:
    """Merge the smallest values of ``d2`` along ``dim`` (with column indices + ``offset``)
    into the running top-K of ``rows``."""
    keep = best_v.shape[1]
    vals, idx = d2.topk(min(keep, d2.shape[dim]), dim=dim, largest=False, sorted=False)
    if dim == 0:
        vals, idx = vals.T, idx.T
    cat_v = torch.cat([best_v[rows], vals], dim=1)
    cat_i = torch.cat([best_i[rows], idx + offset], dim=1)
    v, pos = cat_v.topk(keep, dim=1, largest=False, sorted=False)
    best_v[rows] = v
    best_i[rows] = cat_i.gather(1, pos)


def _knn_sq_distances(x: _Blocks, k: int, bar: tqdm) -> torch.Tensor:
    """(n, k) squared distances from each row to its k nearest other rows, ascending.

    Visits each unordered pair of row blocks once (the distance matrix is symmetric) and keeps
    a running top-(k + 1) per row; the self-distance is set to exactly 0 and dropped at the end.
    """
    best = torch.full((x.n, k + 1), float("inf"), dtype=torch.float64, device=x.center.device)
    scratch = _scratch(x, x)
    for rows, a in x:
        for j in range(rows.start, x.n, x.batch_size):
            cols = slice(j, j + x.batch_size)
            d2 = _sq_dists(a, x.sq_norms[rows], x.block(cols), x.sq_norms[cols], scratch)
            if cols == rows:
                d2.fill_diagonal_(0.0)
            best[rows] = _merge_smallest(best[rows], d2, dim=1)
            if cols != rows:
                best[cols] = _merge_smallest(best[cols], d2, dim=0)
            bar.update(1)
    return best.sort(dim=1).values[:, 1:]


def _knn_sq_distances_faiss(x: _Blocks, k: int, bar: tqdm) -> torch.Tensor:
    """Exact k-NN (IndexFlatL2, float32) with faiss; the membership tests stay in torch."""
    try:
        import faiss
    except ImportError:
        raise RdbenchError(
            "backend='faiss' needs the faiss package: pip install faiss-cpu "
            "(or pip install 'rdbench[faiss]'), or use backend='torch'"
        ) from None
    index = faiss.IndexFlatL2(x.data.shape[1])
    for _, block in x:
        index.add(np.ascontiguousarray(block.cpu().numpy(), dtype=np.float32))
    chunks = []
    for _, block in x:
        d2, _ = index.search(np.ascontiguousarray(block.cpu().numpy(), dtype=np.float32), k + 1)
        chunks.append(torch.from_numpy(d2))
        bar.update(1)
    d2 = torch.cat(chunks).to(device=x.center.device, dtype=torch.float64)
    return d2.clamp_(min=0).sort(dim=1).values[:, 1:]


def _merge_smallest(best: torch.Tensor, d2: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``best.shape[1]`` smallest values per row of ``best`` joined with ``d2`` along
    ``dim`` (``dim=0``: the columns of ``d2`` belong to the rows of ``best``)."""
    keep = best.shape[1]
    block = d2.topk(min(keep, d2.shape[dim]), dim=dim, largest=False, sorted=False).values
    if dim == 0:
        block = block.T
    return torch.cat([best, block], dim=1).topk(keep, dim=1, largest=False, sorted=False).values


def _sq_dists(
    a: torch.Tensor, na: torch.Tensor, b: torch.Tensor, nb: torch.Tensor, scratch: torch.Tensor
) -> torch.Tensor:
    """||a_i - b_j||^2 = ||b_j||^2 - 2 a_i.b_j + ||a_i||^2, clamped at 0, in ``scratch``."""
    out = scratch[: a.shape[0] * b.shape[0]].view(a.shape[0], b.shape[0])
    torch.addmm(nb[None, :], a, b.T, alpha=-2.0, out=out)
    return out.add_(na[:, None]).clamp_(min=0.0)


def _scratch(x: _Blocks, y: _Blocks) -> torch.Tensor:
    size = min(x.batch_size, x.n) * min(y.batch_size, y.n)
    return torch.empty(size, dtype=torch.float64, device=x.center.device)


def _as_feature_array(x: Any, name: str, min_samples: int) -> np.ndarray:
    """Validate (N, d) features without copying float32/float64 input (N x d can be large)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not (isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)):
        return as_features(x, name, min_samples=min_samples)
    if x.ndim != 2:
        return as_features(x, name, min_samples=min_samples)  # raises the shape error
    # Same messages as as_features for too few samples or features, on a tiny stand-in.
    stand_in = np.zeros((min(len(x), min_samples), min(x.shape[1], 1)))
    as_features(stand_in, name, min_samples=min_samples)
    for i in range(0, x.shape[0], 4096):  # finite check in chunks: no N x d temporary
        check_finite(x[i : i + 4096], name)
    return np.ascontiguousarray(x)


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise RdbenchError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RdbenchError(f"device={device!r} but CUDA is not available; use device='cpu'")
    return dev


def _progress(n: int, m: int, batch_size: int, with_gen: bool, progress: bool | None) -> tqdm:
    nb, mb = -(-n // batch_size), -(-m // batch_size)
    total = nb * (nb + 1) // 2 + nb * mb + (mb * (mb + 1) // 2 if with_gen else 0)
    disable = None if progress is None else not progress  # None: only on a terminal
    return tqdm(total=total, desc="k-NN manifold", unit="block", disable=disable, leave=False)
