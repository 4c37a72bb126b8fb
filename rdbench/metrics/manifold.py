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
formula (about 1e-12 of the squared norms) so that exact ties and duplicates count as inside
whatever the block layout; results do not depend on ``batch_size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from rdbench import defaults
from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features, check_positive_int, check_same_dim

Backend = Literal["torch", "faiss"]
DEFAULT_BATCH_SIZE = 2048
_EPS = float(np.finfo(np.float64).eps)


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
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    backend: Backend = "torch",
    progress: bool | None = None,
) -> PRDC:
    """All four manifold metrics in one pass over the distances.

    With ``k`` given, all four use it (as ``prdc.compute_prdc(real, fake, nearest_k=k)``);
    with ``k=None``, precision/recall use k = 3 and density/coverage k = 5 (the papers'
    defaults, ``rdbench.defaults``).
    """
    k_pr = defaults.PRECISION_RECALL_K if k is None else k
    k_dc = defaults.DENSITY_COVERAGE_K if k is None else k
    out = _compute(reference, generated, k_pr, k_dc, batch_size, device, backend, progress)
    return PRDC(k_pr=k_pr, k_dc=k_dc, **out)


# ---------------------------------------------------------------------------- internals


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
    ref_np = as_features(reference, "reference", min_samples=k_ref + 1)
    gen_np = as_features(generated, "generated", min_samples=1 if k_pr is None else k_pr + 1)
    check_same_dim(ref_np, gen_np, "reference", "generated")

    center = ref_np.mean(axis=0)
    x = _centred_tensor(ref_np, reference, center, dev)
    y = _centred_tensor(gen_np, generated, center, dev)
    del ref_np, gen_np
    nx, ny = _sq_norms(x, batch_size), _sq_norms(y, batch_size)
    # Rounding bound of ||a||^2 + ||b||^2 - 2 a.b, counted twice (radius and query distance).
    scale = 2.0 * (x.shape[1] + 4) * _EPS
    nmax = float(torch.maximum(nx.max(), ny.max()))

    knn = _knn_sq_distances_faiss if backend == "faiss" else _knn_sq_distances
    bar = _progress(x.shape[0], y.shape[0], batch_size, k_pr is not None, progress)
    with bar:
        ref_knn = knn(x, nx, k_ref, batch_size, bar)
        tol_x = scale * (nx + nmax)
        r_pr = ref_knn[:, k_pr - 1] + tol_x if k_pr is not None else None
        r_dc = ref_knn[:, k_dc - 1] + tol_x if k_dc is not None else None
        r_gen = None
        if k_pr is not None:
            r_gen = knn(y, ny, k_pr, batch_size, bar)[:, k_pr - 1] + scale * (ny + nmax)
        return _cross_sweep(x, nx, y, ny, r_pr, r_dc, r_gen, k_dc, batch_size, bar)


def _cross_sweep(
    x: torch.Tensor,
    nx: torch.Tensor,
    y: torch.Tensor,
    ny: torch.Tensor,
    r_pr: torch.Tensor | None,
    r_dc: torch.Tensor | None,
    r_gen: torch.Tensor | None,
    k_dc: int | None,
    batch_size: int,
    bar: tqdm,
) -> dict[str, float]:
    """One pass over the N x M reference-generated distances, block by block."""
    n, m = x.shape[0], y.shape[0]
    gen_in_ref = torch.zeros(m, dtype=torch.bool, device=x.device)  # precision
    ref_in_gen = torch.zeros(n, dtype=torch.bool, device=x.device)  # recall
    ball_count = torch.zeros(m, dtype=torch.int64, device=x.device)  # density
    ref_covered = torch.zeros(n, dtype=torch.bool, device=x.device)  # coverage
    for i in range(0, n, batch_size):
        rows = slice(i, i + batch_size)
        for j in range(0, m, batch_size):
            cols = slice(j, j + batch_size)
            d2 = _sq_dists(x[rows], nx[rows], y[cols], ny[cols])
            if r_pr is not None:
                gen_in_ref[cols] |= (d2 <= r_pr[rows, None]).any(dim=0)
                ref_in_gen[rows] |= (d2 <= r_gen[None, cols]).any(dim=1)
            if r_dc is not None:
                inside = d2 <= r_dc[rows, None]
                ball_count[cols] += inside.sum(dim=0)
                ref_covered[rows] |= inside.any(dim=1)
            bar.update(1)
    out: dict[str, float] = {}
    if r_pr is not None:
        out["precision"] = gen_in_ref.double().mean().item()
        out["recall"] = ref_in_gen.double().mean().item()
    if r_dc is not None:
        out["density"] = ball_count.sum().item() / (k_dc * m)
        out["coverage"] = ref_covered.double().mean().item()
    return out


def _knn_sq_distances(
    x: torch.Tensor, nx: torch.Tensor, k: int, batch_size: int, bar: tqdm
) -> torch.Tensor:
    """(n, k) squared distances from each row to its k nearest other rows, ascending.

    Visits each unordered pair of row blocks once (the distance matrix is symmetric) and keeps
    a running top-(k + 1) per row; the self-distance is set to exactly 0 and dropped at the end.
    """
    n = x.shape[0]
    best = torch.full((n, k + 1), float("inf"), dtype=x.dtype, device=x.device)
    for i in range(0, n, batch_size):
        rows = slice(i, i + batch_size)
        for j in range(i, n, batch_size):
            cols = slice(j, j + batch_size)
            d2 = _sq_dists(x[rows], nx[rows], x[cols], nx[cols])
            if i == j:
                d2.fill_diagonal_(0.0)
            best[rows] = _merge_smallest(best[rows], d2)
            if i != j:
                best[cols] = _merge_smallest(best[cols], d2.T)
            bar.update(1)
    return best.sort(dim=1).values[:, 1:]


def _knn_sq_distances_faiss(
    x: torch.Tensor, nx: torch.Tensor, k: int, batch_size: int, bar: tqdm
) -> torch.Tensor:
    """Exact k-NN (IndexFlatL2, float32) with faiss; the membership tests stay in torch."""
    try:
        import faiss
    except ImportError:
        raise RdbenchError(
            "backend='faiss' needs the faiss package: pip install faiss-cpu "
            "(or pip install 'rdbench[faiss]'), or use backend='torch'"
        ) from None
    data = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    chunks = []
    for i in range(0, data.shape[0], batch_size):
        d2, _ = index.search(data[i : i + batch_size], k + 1)
        chunks.append(d2)
        bar.update(1)
    d2 = torch.from_numpy(np.concatenate(chunks)).to(device=x.device, dtype=x.dtype)
    return d2.clamp_(min=0).sort(dim=1).values[:, 1:]


def _merge_smallest(best: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """Keep the ``best.shape[1]`` smallest values per row of ``best`` and ``d2`` together."""
    keep = best.shape[1]
    block = d2.topk(min(keep, d2.shape[1]), dim=1, largest=False, sorted=False).values
    return torch.cat([best, block], dim=1).topk(keep, dim=1, largest=False, sorted=False).values


def _sq_dists(a: torch.Tensor, na: torch.Tensor, b: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j, clamped at 0."""
    return torch.addmm(na[:, None] + nb[None, :], a, b.T, alpha=-2.0).clamp_(min=0.0)


def _sq_norms(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([blk.square().sum(dim=1) for blk in x.split(batch_size)])


def _centred_tensor(
    arr: np.ndarray, source: Any, center: np.ndarray, device: torch.device
) -> torch.Tensor:
    """``arr - center`` as a float64 tensor, in place when ``arr`` is our own copy."""
    if arr.flags.owndata and arr is not source and arr.flags.writeable:
        arr -= center
    else:
        arr = arr - center
    return torch.from_numpy(arr).to(device)


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
