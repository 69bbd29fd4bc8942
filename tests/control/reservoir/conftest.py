"""Fixtures of the reservoir's tests: an empty reservoir and a one-file model artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control.reservoir import Reservoir


@pytest.fixture
def reservoir(tmp_path: Path) -> Iterator[Reservoir]:
    with Reservoir(tmp_path / "reservoir") as res:
        yield res


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.zip"
    path.write_bytes(b"weights v1")
    return path
