"""One checked device: a bad --device is one RdbenchError, whatever the machine."""

from __future__ import annotations

import pytest
import torch

from rdbench.devices import resolve_device
from rdbench.errors import RdbenchError


def test_default_and_valid_devices():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "fragment"),
    [
        ("tpu", "is not a torch device"),
        ("", "is not a torch device"),
        ("cuda:99", "is not usable on this machine"),
    ],
)
def test_unknown_or_unusable_devices_raise_one_error(device, fragment):
    with pytest.raises(RdbenchError, match=fragment):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(RdbenchError, match="'cuda' is not usable.*--device cpu"):
        resolve_device("cuda")


def test_every_loader_goes_through_it():
    from rdbench.features.base import load_extractor
    from rdbench.rewards import load

    with pytest.raises(RdbenchError, match="'tpu'"):
        load_extractor("inception", device="tpu")
    with pytest.raises(RdbenchError, match="'tpu'"):
        load("aesthetic", device="tpu")
