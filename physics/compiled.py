"""How the physics is compiled: every model is one scalar function, compiled once with numba.

Each model module (``servers``, ``crah``, ``room_air``, ``chilled_water``, ``chiller``,
``economiser``, ``cooling_tower``, ``pumps``, ``power_chain``) writes its equations once, as
a :func:`jit` function of scalars and a *record* of its parameters. The plant's step
(:mod:`physics.plant.kernel`) composes those functions in a compiled loop, and each module's
array API (what tests, benchmarks and the twin's design code call) applies the same
functions element-wise. There is no second copy of any equation.

The models never allocate arrays (they write into arrays their caller passes): the plant's
step loop is compiled without numba's runtime (:func:`jit_loop`), and whatever it calls is
compiled the same way.

A record is a ``NamedTuple`` made from a frozen parameter dataclass by :func:`record_type`
(same field names, nested dataclasses become nested records, derived properties may be
added), because numba's compiled code can read named tuples but not dataclasses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numba as nb
import numpy as np

FASTMATH = {"contract", "afn", "arcp"}
"""LLVM fast-math flags that keep NaN/inf semantics (a stuck valve is a NaN "not stuck")."""

F = TypeVar("F", bound=Callable[..., Any])


def _cache_dir() -> Path:
    """Where compiled physics is cached: a folder named after the physics' sources.

    numba invalidates a cached function when its own file changes, not when a function it
    calls from another module does; the plant's step calls every model module, so a changed
    model would otherwise run stale machine code. One folder per version of the sources
    (``physics/**/*.py``) makes any change recompile. ``NUMBA_CACHE_DIR`` moves the root.
    """
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "twinloop", "numba"
    )
    return Path(root) / digest.hexdigest()[:16]


nb.config.CACHE_DIR = str(_cache_dir())  # type: ignore[attr-defined]


def jit(fn: F) -> F:
    """Compile a scalar physics function (cached on disk, the plant's fast-math flags)."""
    return cast(F, nb.njit(cache=True, fastmath=FASTMATH)(fn))


def jit_inline(fn: F) -> F:
    """:func:`jit`, inlined into compiled callers (numba IR inlining). For functions that
    take arrays and run once per site and step: a compiled call that passes arrays pays an
    atomic reference count per array, which costs the plant's step more than its physics."""
    return cast(F, nb.njit(cache=True, fastmath=FASTMATH, inline="always")(fn))


def jit_loop(fn: F) -> F:
    """:func:`jit` without numba's runtime, for the plant's step loop.

    With the runtime, every array taken out of a structure or passed on inside the loop
    costs an atomic reference count; that was most of the step's time. Without it no
    reference is counted, and nothing it calls may allocate an array: the physics models
    write into arrays their caller owns (numba's private ``_nrt`` option, pinned with
    numba in requirements.lock and covered by the plant's golden tests).
    """
    options: dict[str, Any] = {"cache": True, "fastmath": FASTMATH, "_nrt": False}
    return cast(F, nb.njit(**options)(fn))


_RECORDS: dict[type, type] = {}


def record_type(
    cls: type,
    *,
    derived: Sequence[str] = (),
    exclude: Sequence[str] = (),
    module: str | None = None,
) -> type:
    """A ``NamedTuple`` class ``<Cls>Record`` with the dataclass's numeric fields (less
    ``exclude``) and ``derived`` properties, defined in ``module`` (the dataclass's by
    default) under that name, so compiled code that takes it caches on disk. Assign it to
    the module-level name ``<Cls>Record`` there."""
    fields: list[tuple[str, Any]] = [
        (f.name, Any)
        for f in dataclasses.fields(cls)
        if f.type not in ("str", str) and f.name not in exclude
    ]
    fields += [(name, float) for name in derived]
    record = NamedTuple(f"{cls.__name__}Record", fields)  # type: ignore[misc]
    record.__module__ = module or cls.__module__
    setattr(sys.modules[record.__module__], record.__name__, record)
    _RECORDS[cls] = record
    return record


def as_record(obj: Any) -> Any:
    """The record of a parameter dataclass instance (nested dataclasses included)."""
    record: Any = _RECORDS[type(obj)]
    values = []
    for name in record._fields:
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = as_record(value)
        elif isinstance(value, tuple):  # curve coefficients: one numba type, float64
            value = tuple(float(v) for v in value)
        values.append(value)
    return record(*values)


def elementwise(core: Callable[..., Any], *args: Any, n_out: int = 1) -> Any:
    """Apply a compiled scalar function over broadcast array arguments.

    Returns one float64 array (``n_out`` = 1) or a tuple of them, shaped like the broadcast
    of ``args``. Non-array arguments such as records are passed through unchanged.
    """
    arrays = [i for i, a in enumerate(args) if not isinstance(a, tuple)]
    shaped = np.broadcast_arrays(*(np.asarray(args[i], dtype=np.float64) for i in arrays))
    shape = shaped[0].shape if shaped else ()
    flat = [s.ravel() for s in shaped]
    outs = [np.empty(int(np.prod(shape))) for _ in range(n_out)]
    call = list(args)
    for k in range(outs[0].size):
        for pos, i in enumerate(arrays):
            call[i] = float(flat[pos][k])
        result = core(*call)
        if n_out == 1:
            outs[0][k] = result
        else:
            for j in range(n_out):
                outs[j][k] = result[j]
    shaped_outs = [o.reshape(shape) for o in outs]
    return shaped_outs[0] if n_out == 1 else tuple(shaped_outs)
