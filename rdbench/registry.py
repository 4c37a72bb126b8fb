"""One registry mechanism for every pluggable kind of thing (extractors, rewards, suites, ...).

Modelled on torch-fidelity's ``registry.py``: names are validated (no whitespace, no path
separators) and duplicates are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rdbench.errors import RdbenchError

T = TypeVar("T")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class Registry(Generic[T]):
    """A name -> object mapping for one kind of thing, e.g. ``Registry("feature extractor")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise RdbenchError(
                f"invalid {self.kind} name {name!r}: use lowercase letters, digits, '_', '-' "
                "or '.', starting with a letter or digit (no whitespace or path separators)"
            )
        if name in self._items:
            raise RdbenchError(f"{self.kind} {name!r} is already registered")

        def add(value: T) -> T:
            self._items[name] = value
            return value

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RdbenchError(f"unknown {self.kind} {name!r}; available: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
