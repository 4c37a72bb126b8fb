"""Read and write saved feature arrays (``.npy`` or ``.npz``) with clear errors."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from rdbench.errors import RdbenchError
from rdbench.metrics._checks import as_features

NPZ_KEY = "features"


def load_features(path: str | Path) -> np.ndarray:
    """Load an (N, d) float array from ``.npy`` or ``.npz`` (key ``features`` or the only array).

    Object arrays are refused (``allow_pickle=False``), so a hostile file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise RdbenchError(f"feature file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RdbenchError(
            f"{str(path)!r} is not a readable .npy/.npz feature file ({exc})"
        ) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.keys())
            if NPZ_KEY in keys:
                key = NPZ_KEY
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise RdbenchError(
                    f"{str(path)!r} holds arrays {keys}; name the feature array {NPZ_KEY!r}"
                )
            try:
                arr = data[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise RdbenchError(f"{str(path)!r}: array {key!r} unreadable ({exc})") from None
    else:
        arr = data
    return as_features(arr, str(path))


def save_features(path: str | Path, features: np.ndarray) -> None:
    path = Path(path)
    arr = as_features(features, "features")
    if path.suffix == ".npz":
        np.savez(path, **{NPZ_KEY: arr})
    else:
        np.save(path, arr)
