"""The reservoir's files: where artifacts and report folders are kept, how they are hashed,
and how a copy reaches its place without a crash ever leaving half of one.

A file or folder is copied to a fresh staging folder first (:func:`staged`); inside the
database transaction that records it, :meth:`Stage.place` moves the staging folder into
place with one :func:`os.replace`. If the transaction fails the copy is moved out again; a
leftover at the destination (a crash between a move and its commit) is moved aside to
``.orphans``, never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from control.reservoir.records import ReservoirError, canonical_json

logger = logging.getLogger(__name__)

DB_FILE = "reservoir.sqlite"
ARTIFACTS_DIR = "artifacts"
REPORTS_DIR = "reports"
STAGING_DIR = ".staging"
ORPHANS_DIR = ".orphans"
_CHUNK = 1 << 20


def hash_artifact(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes; of a folder, over its files in sorted relative-path
    order, each as path, NUL, 8-byte size and bytes (empty folders do not count)."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    files: list[tuple[str, Path]] = []
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            full = Path(dirpath) / filename
            files.append((full.relative_to(path).as_posix(), full))
    for rel, full in sorted(files):
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(full.stat().st_size.to_bytes(8, "big"))
        with full.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def hash_hyperparameters(params_json: str) -> str:
    """SHA-256 (hex) of canonical JSON hyper-parameters: the hash of a policy without an
    artifact (a rule)."""
    return hashlib.sha256(params_json.encode("utf-8")).hexdigest()


def current_hash(root: Path, artifact: str | None, hyperparameters_json: str) -> str | None:
    """The hash a policy's stored artifact (a path relative to ``root``) has now, or of its
    hyper-parameters where it has none; None if the artifact is missing."""
    if artifact is None:
        return hash_hyperparameters(canonical_json(json.loads(hyperparameters_json)))
    path = root / artifact
    if not (path.is_file() or path.is_dir()):
        return None
    return hash_artifact(path)


@dataclass
class Stage:
    """A copied file or folder (``copy``) alone in a staging ``folder`` under ``root``."""

    root: Path
    folder: Path
    copy: Path
    placed: Path | None = None

    def place(self, dest: Path) -> str:
        """Move the staging folder to ``root/dest`` in one step; the copy's path relative to
        ``root``. A leftover at ``dest`` (a crash between a move and its commit) is moved
        aside to ``.orphans``, not deleted."""
        target = self.root / dest
        if target.exists():
            stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
            aside = self.root / ORPHANS_DIR / f"{'-'.join(dest.parts)}-{stamp}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, aside)
            logger.warning("reservoir: moved leftover %s aside to %s", target, aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder, target)
        self.placed = target
        return (dest / self.copy.name).as_posix()


@contextmanager
def staged(root: Path, source: Path | None) -> Iterator[Stage | None]:
    """A copy of ``source`` in a fresh staging folder of the reservoir at ``root``, to be
    moved into the store by :meth:`Stage.place` inside a transaction; moved out again if the
    block fails. None (and nothing copied) for no source."""
    if source is None:
        yield None
        return
    if source.is_dir() and root.resolve().is_relative_to(source.resolve()):
        raise ReservoirError(f"{source}: holds the reservoir {root} itself; not copied")
    folder = Path(tempfile.mkdtemp(dir=root / STAGING_DIR))
    stage = Stage(root, folder, folder / source.name)
    try:
        if source.is_dir():
            shutil.copytree(source, stage.copy)
        else:
            shutil.copy2(source, stage.copy)
        yield stage
    except BaseException:
        if stage.placed is not None:
            shutil.rmtree(stage.placed, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
