"""The torch device a run asks for, checked once, so a bad ``--device`` is one clear error."""

from __future__ import annotations

import torch

from rdbench.errors import RdbenchError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, checked usable, or when None the default: CUDA if available, else the CPU.

    A name torch does not know, or a device this machine cannot allocate on (CUDA without a
    GPU or driver, a GPU index beyond the GPUs present), raises :class:`RdbenchError`.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise RdbenchError(f"device {str(device)!r} is not a torch device: {exc}") from None
    if dev.type != "cpu":
        try:
            torch.empty(0, device=dev)  # the cheapest probe that the device is really usable
        except (RuntimeError, AssertionError) as exc:  # AssertionError: torch built without CUDA
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RdbenchError(
                f"device {str(device)!r} is not usable on this machine ({first}); "
                "use --device cpu, or leave --device out for the default"
            ) from None
    return dev
