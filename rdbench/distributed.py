"""Multi-process evaluation with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node N -m rdbench evaluate ...`` starts N copies of the command; each
reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment (:func:`context`) and
joins one process group: ``gloo`` on CPU, ``cpu:gloo,cuda:nccl`` when CUDA is used (so the
small CPU tensors exchanged here always travel over gloo). Without ``WORLD_SIZE`` (or with 1)
everything here is a no-op and the code runs as a single process.

Data flow of one distributed evaluation:

1. **Shard** (:func:`shard`): rank ``r`` of ``W`` takes blocks ``r, r + W, r + 2W, ...`` of
   ``batch_size`` consecutive items of the set (so each batch holds the same images as in one
   process: network outputs can depend on a batch's other members at float32 round-off). No
   padding and no duplicates (a plain ``DistributedSampler`` pads with repeats, which
   would count some images twice and skew diversity metrics), so every image is processed
   exactly once; ranks differ by at most one block.
2. **Extract** (:func:`distributed_extract`, :func:`distributed_score`): each rank runs the
   ordinary :func:`rdbench.features.extract.extract_features` /
   :func:`rdbench.rewards.score_imageset` on its shard, with its own cache writes (chunks are
   written atomically, so ranks sharing ``RDBENCH_HOME`` never see torn files).
3. **Agree** (:func:`agree`): all ranks exchange "ok" or their error message. If any rank
   failed, every rank raises the same :class:`DistributedError` naming the rank and the file,
   so the job stops cleanly everywhere; finished cache chunks stay, and a rerun resumes.
4. **Gather to rank 0** (:func:`gather_rows_to_rank0`): the rows (features, scores) and their
   global positions, reassembled in the set's order. Rank 0 then computes every metric on
   exactly the array a single process would have built, so the N-process result equals the
   1-process result bit for bit (same rows, same order, same float operations), given the
   same batch size and cache state (a row computed in another batch may differ by ~1e-7).
5. **Share** (:func:`share`): rank 0 broadcasts the finished result; only rank 0 writes files
   and prints.

Why gather instead of sharded k-NN: precision/recall/density/coverage, Vendi and per-prompt
diversity need every row (k-NN radii are global), and the gathered matrix is small next to the
images: 100k x 2048 float32 is 800 MB. Rank 0 holds at most about twice that while gathering
(the padded receive buffers plus the ordered copy); other ranks hold only their shard. A
sharded k-NN would save that memory but needs several all-to-all rounds and makes results
depend on the world size through reduction order.

Set statistics (count, mean, covariance) merge exactly across ranks with
:func:`all_reduce_stats` (float64 sums centred on the global mean), for callers that keep
only statistics; ``evaluate`` uses the gathered rows instead because it needs them anyway.

Failures outside a collective phase (rank 0 computing metrics, a rank failing to open the set)
are shared by :func:`failures_shared`: the failing rank joins the others' next :func:`agree`
with its message. Every phase here therefore starts its communication with an ``agree``. A
crashed process (killed, segfault) is handled by ``torchrun`` itself, which stops the others.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch

from rdbench.errors import RdbenchError

T = TypeVar("T")
#: Seconds a rank waits in a collective (e.g. while rank 0 computes bootstrap intervals).
DEFAULT_TIMEOUT_S = 4 * 3600.0
_MAX_MESSAGE = 600


class DistributedError(RdbenchError):
    """Raised on every rank when at least one rank failed (the message names which)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job: ``rank`` of ``world_size``, GPU ``local_rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that computes metrics, writes and prints."""
        return self.rank == 0

    def device(self, requested: str | torch.device | None = None) -> str | None:
        """The device this rank should use: ``cuda`` (or none given, with CUDA present) means
        ``cuda:<local_rank mod GPU count>``; an explicit index or ``cpu`` is kept."""
        if not self.active:
            return None if requested is None else str(requested)
        wanted = str(requested) if requested is not None else None
        if wanted == "cuda" or (wanted is None and torch.cuda.is_available()):
            count = torch.cuda.device_count()  # more ranks than GPUs: ranks share them
            return f"cuda:{self.local_rank % count if count else self.local_rank}"
        return wanted


_CONTEXT: DistContext | None = None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RdbenchError(f"environment variable {name}={raw!r} must be an integer") from None


def context(*, backend: str | None = None) -> DistContext:
    """This process's :class:`DistContext`, joining the process group on first call.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by ``torchrun``); with ``WORLD_SIZE``
    unset or 1 returns a single-process context and initialises nothing. ``backend`` (or the
    environment variable ``RDBENCH_DIST_BACKEND``) overrides the choice of ``gloo`` on CPU and
    ``cpu:gloo,cuda:nccl`` with CUDA. ``RDBENCH_DIST_TIMEOUT_S`` sets the collective timeout
    (default :data:`DEFAULT_TIMEOUT_S`: rank 0 may compute metrics for a long time while the
    others wait).
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise RdbenchError(
            f"torch.distributed environment: need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, "
            f"got RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}"
        )
    if world == 1:
        _CONTEXT = DistContext()
        return _CONTEXT
    import torch.distributed as dist

    chosen = backend or os.environ.get("RDBENCH_DIST_BACKEND") or _default_backend()
    if torch.cuda.is_available() and "nccl" in chosen:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        timeout = float(os.environ.get("RDBENCH_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        dist.init_process_group(backend=chosen, timeout=timedelta(seconds=timeout))
        atexit.register(_shutdown)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise RdbenchError(
            f"process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not match "
            f"RANK={rank}, WORLD_SIZE={world}"
        )
    _CONTEXT = DistContext(rank, world, local_rank, chosen)
    return _CONTEXT


def _default_backend() -> str:
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True in a single process and on rank 0 (the only rank that writes and prints)."""
    return context().is_main


# ------------------------------------------------------------------------------ sharding


def shard_positions(n: int, rank: int, world: int, block: int = 1) -> list[int]:
    """Positions ``0..n-1`` of rank ``rank``: blocks of ``block`` consecutive positions dealt
    round-robin (block ``b`` goes to rank ``b mod world``). Disjoint, complete, no padding.

    ``block=1`` is the plain rank-strided split ``r, r + W, r + 2W, ...``. ``block`` = the
    batch size keeps every batch's members the same as in one process, so models whose
    float32 output depends on the batch's other members still give bit-identical rows.
    """
    for name, value in (("n", n), ("rank", rank), ("world", world), ("block", block)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RdbenchError(f"shard: {name} must be an integer, got {value!r}")
    if world < 1 or not 0 <= rank < world or block < 1 or n < 0:
        raise RdbenchError(
            f"shard: need 0 <= rank < world, block >= 1 and n >= 0; got rank={rank}, "
            f"world={world}, block={block}, n={n}"
        )
    step = block * world
    return [
        p for start in range(rank * block, n, step) for p in range(start, min(start + block, n))
    ]


def shard(items: Sequence[T], rank: int, world: int, block: int = 1) -> list[T]:
    """This rank's items: ``items[p]`` for ``p`` in :func:`shard_positions`."""
    return [items[p] for p in shard_positions(len(items), rank, world, block)]


def shard_imageset(imageset: Any, rank: int, world: int, block: int = 1) -> Any:
    """A shallow copy of an :class:`~rdbench.imageset.ImageSet` holding only this rank's items
    (it reads files through the same source)."""
    part = copy.copy(imageset)
    part.items = shard(imageset.items, rank, world, block)
    return part


# ------------------------------------------------------------------------------ collectives


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, RdbenchError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 4] + " ..."


def agree(error: BaseException | str | None, ctx: DistContext | None = None) -> None:
    """Collective: every rank says whether it failed; if any did, every rank raises.

    The :class:`DistributedError` names each failed rank and its message (which names the
    file); the failing rank chains its own exception, or re-raises it when it is not an
    :class:`RdbenchError` (a bug keeps its traceback). A no-op in a single process (the error,
    if any, is re-raised as is).
    """
    ctx = ctx or context()
    if not ctx.active:
        if isinstance(error, BaseException):
            raise error
        if error is not None:
            raise RdbenchError(error)
        return
    import torch.distributed as dist

    mine = None if error is None else (error if isinstance(error, str) else _describe(error))
    reports: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(reports, mine)
    failed = [(r, msg) for r, msg in enumerate(reports) if msg is not None]
    if not failed:
        return
    text = "; ".join(f"rank {r} of {ctx.world_size} failed: {msg}" for r, msg in failed)
    if isinstance(error, BaseException) and not isinstance(error, RdbenchError):
        raise error  # a bug, not bad input: keep its traceback on the rank that hit it
    if isinstance(error, BaseException):
        raise DistributedError(text) from error
    raise DistributedError(text)


@contextlib.contextmanager
def failures_shared(ctx: DistContext | None = None) -> Iterator[None]:
    """Run a block whose failure on one rank must stop all ranks.

    On an exception (other than a :class:`DistributedError`, which every rank already knows)
    this rank joins the others' next :func:`agree` with its message, then re-raises.
    """
    ctx = ctx or context()
    try:
        yield
    except DistributedError:
        raise
    except Exception as exc:
        if ctx.active:
            with contextlib.suppress(DistributedError):
                agree(exc, ctx)
        raise


def share(value: T | None, ctx: DistContext | None = None) -> T:
    """Collective: rank 0's ``value`` on every rank (after an :func:`agree` that lets a rank
    that failed before this point stop everyone)."""
    ctx = ctx or context()
    if not ctx.active:
        return value  # type: ignore[return-value]
    import torch.distributed as dist

    agree(None, ctx)
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def gather_rows_to_rank0(
    array: np.ndarray, positions: Sequence[int] | np.ndarray, ctx: DistContext | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Collective: every rank's ``(n_r, d)`` rows with their global ``positions``, on rank 0.

    Returns ``(positions, rows)`` sorted by position on rank 0 (``None`` on other ranks); in a
    single process it sorts the input. Padded ``gather`` of tensors: rank 0 receives
    ``world x max_r n_r x d`` values plus the sorted copy (about twice the full matrix).
    """
    ctx = ctx or context()
    rows = np.asarray(array)
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if rows.ndim != 2 or rows.shape[0] != pos.shape[0]:
        raise RdbenchError(
            f"gather_rows_to_rank0: need an (n, d) array and n positions, got {rows.shape} "
            f"and {pos.shape[0]}"
        )
    if not ctx.active:
        order = np.argsort(pos, kind="stable")
        return pos[order], rows[order]
    import torch.distributed as dist

    header = torch.tensor([rows.shape[0], rows.shape[1]], dtype=torch.int64)
    headers = [torch.zeros(2, dtype=torch.int64) for _ in range(ctx.world_size)]
    dist.all_gather(headers, header)
    counts = [int(h[0]) for h in headers]
    dims = {int(h[1]) for h, c in zip(headers, counts, strict=True) if c > 0}
    if len(dims) > 1:
        raise RdbenchError(f"gather_rows_to_rank0: ranks have different widths {sorted(dims)}")
    width, most = rows.shape[1], max(counts)
    if most == 0:
        return (pos, rows) if ctx.is_main else None
    dtype = torch.from_numpy(np.zeros(0, dtype=rows.dtype)).dtype
    padded = torch.zeros((most, width), dtype=dtype)
    padded[: rows.shape[0]] = torch.from_numpy(np.ascontiguousarray(rows))
    padded_pos = torch.full((most,), -1, dtype=torch.int64)
    padded_pos[: pos.shape[0]] = torch.from_numpy(pos)
    main = ctx.is_main
    bufs = [torch.empty_like(padded) for _ in range(ctx.world_size)] if main else None
    pos_bufs = [torch.empty_like(padded_pos) for _ in range(ctx.world_size)] if main else None
    dist.gather(padded, bufs, dst=0)
    dist.gather(padded_pos, pos_bufs, dst=0)
    if not main:
        return None
    assert bufs is not None and pos_bufs is not None
    all_pos = np.concatenate([p[:c].numpy() for p, c in zip(pos_bufs, counts, strict=True)])
    all_rows = np.concatenate([b[:c].numpy() for b, c in zip(bufs, counts, strict=True)])
    del bufs
    if len(np.unique(all_pos)) != len(all_pos):
        raise RdbenchError("gather_rows_to_rank0: two ranks sent the same position")
    order = np.argsort(all_pos, kind="stable")
    return all_pos[order], all_rows[order]


def gather_objects_to_rank0(value: T, ctx: DistContext | None = None) -> list[T] | None:
    """Collective: the list of every rank's (picklable, small) ``value`` on rank 0."""
    ctx = ctx or context()
    if not ctx.active:
        return [value]
    import torch.distributed as dist

    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def all_reduce_stats(stats: Any, ctx: DistContext | None = None) -> Any:
    """Collective: the :class:`~rdbench.metrics.stats.FeatureStats` of all ranks' data, on
    every rank, from two float64 sum all-reduces.

    1. ``n = sum_r n_r`` and ``sum_x = sum_r n_r mean_r``, so ``mu = sum_x / n``;
    2. ``M2 = sum_r [M2_r + n_r (mean_r - mu)(mean_r - mu)^T]``, each term formed locally.

    Step 2 sums positive semi-definite terms centred on the global mean, so no digits cancel
    (raw sums of ``x x^T`` minus ``n mu mu^T`` lose ~5 digits when the mean is 100x the
    spread). The result matches the one-process statistics to float64 round-off.
    """
    from rdbench.metrics.stats import FeatureStats

    ctx = ctx or context()
    if not ctx.active:
        return stats.copy()
    import torch.distributed as dist

    state = stats.to_arrays()
    n_r, mean_r = int(state["count"]), state["mean"]
    head = torch.from_numpy(np.concatenate([[float(n_r)], mean_r * n_r]))
    dist.all_reduce(head, op=dist.ReduceOp.SUM)
    n = int(round(head[0].item()))
    mu = head[1:].numpy() / n if n > 0 else np.zeros_like(mean_r)
    delta = mean_r - mu
    scatter = torch.from_numpy(state["m2"] + np.outer(delta, delta) * n_r)
    dist.all_reduce(scatter, op=dist.ReduceOp.SUM)
    return FeatureStats.from_arrays({"count": n, "mean": mu, "m2": scatter.numpy()})


# ------------------------------------------------------------------------------ pipeline


def _run_on_shard(
    imageset: Any, fn: Any, block: int, ctx: DistContext
) -> tuple[Any, dict[str, int]]:
    """``fn(shard)`` on this rank's shard, then :func:`agree`; returns the result and a map
    from item key to global position."""
    part = shard_imageset(imageset, ctx.rank, ctx.world_size, block)
    result, error = None, None
    try:
        result = fn(part)
    except Exception as exc:  # shared with every rank by agree() below
        error = exc
    agree(error, ctx)
    positions = shard_positions(len(imageset.items), ctx.rank, ctx.world_size, block)
    return result, {imageset.items[p].key: p for p in positions}


def _gather_result(
    rows: np.ndarray, keys: list[str], skipped: list[tuple[str, str]], counts: tuple[int, ...],
    where: dict[str, int], imageset: Any, ctx: DistContext,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]], tuple[int, ...]] | None:  # fmt: skip
    """Rows and small metadata of every rank, in the set's order, on rank 0."""
    gathered = gather_rows_to_rank0(rows, [where[k] for k in keys], ctx)
    meta = gather_objects_to_rank0((skipped, counts), ctx)
    if gathered is None or meta is None:
        return None
    positions, ordered = gathered
    items = imageset.items
    order = {item.key: i for i, item in enumerate(items)}
    all_skipped = sorted(
        (s for part_skipped, _ in meta for s in part_skipped),
        key=lambda s: order.get(s[0], len(items)),
    )
    totals = tuple(int(sum(c[i] for _, c in meta)) for i in range(len(counts)))
    return [items[p].key for p in positions.tolist()], ordered, all_skipped, totals


def distributed_extract(
    imageset: Any, extractor: Any, ctx: DistContext | None = None, **options: Any
) -> Any:
    """:func:`~rdbench.features.extract.extract_features` over all ranks.

    Each rank extracts its :func:`shard` in blocks of ``batch_size`` (so batches hold the same
    images as in one process), reading and writing the feature cache itself; the
    ranks :func:`agree` on failures, and rank 0 receives a
    :class:`~rdbench.features.extract.Features` in ``imageset.items`` order, identical to the
    single-process one (``n_cached`` / ``n_computed`` summed over ranks). Other ranks get
    ``None``. ``options`` are ``extract_features``'s keyword arguments.
    """
    from rdbench.features.extract import Features, extract_features

    ctx = ctx or context()
    if not ctx.active:
        return extract_features(imageset, extractor, **options)
    block = int(options.get("batch_size", 64))  # extract_features' default
    feats, where = _run_on_shard(
        imageset, lambda p: extract_features(p, extractor, **options), block, ctx
    )
    out = _gather_result(
        feats.array, feats.keys, feats.skipped, (feats.n_cached, feats.n_computed), where,
        imageset, ctx,
    )  # fmt: skip
    if out is None:
        return None
    keys, array, skipped, (n_cached, n_computed) = out
    return Features(array, keys, skipped, n_cached, n_computed, feats.extractor_id)


def distributed_score(
    imageset: Any, reward: Any, ctx: DistContext | None = None, **options: Any
) -> Any:
    """:func:`rdbench.rewards.score_imageset` over all ranks, like :func:`distributed_extract`:
    a :class:`~rdbench.rewards.scoring.ScoreResult` in set order on rank 0, ``None`` elsewhere.
    """
    from rdbench.rewards.scoring import ScoreResult, score_imageset

    ctx = ctx or context()
    if not ctx.active:
        return score_imageset(imageset, reward, **options)
    block = int(options.get("batch_size", 32))  # score_imageset's default
    result, where = _run_on_shard(
        imageset, lambda p: score_imageset(p, reward, **options), block, ctx
    )
    column = np.asarray(result.scores, dtype=np.float64).reshape(-1, 1)
    out = _gather_result(
        column, result.keys, result.skipped, (result.cached,), where, imageset, ctx
    )
    if out is None:
        return None
    keys, scores, skipped, (cached,) = out
    return ScoreResult(result.reward_id, keys, scores[:, 0].copy(), skipped, cached)
