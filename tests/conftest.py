"""Shared test fixtures: an isolated, offline rdbench home for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty RDBENCH_HOME and no network access for downloads."""
    monkeypatch.setenv("RDBENCH_HOME", str(tmp_path_factory.mktemp("rdbench_home")))
    monkeypatch.setenv("RDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for var in [v for v in __import__("os").environ if v.startswith("RDBENCH_FILE_")]:
        monkeypatch.delenv(var)


@pytest.fixture
def shared_data() -> Path:
    """The real prompt files in ../shared/data (skipped when that folder is absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls: one intra-op thread is fastest and immune to CPU contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fresh_accelerate_state():
    """Accelerators keep their precision process-wide: reset it after each test that makes one."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
