"""Real typical-year weather (TMY2, TMY3, EPW) read with pvlib's readers.

A :class:`WeatherSeries` holds one hourly typical year: dry bulb, dew point, relative
humidity, wet bulb (derived with :mod:`physics.psychrometrics`) and station pressure. Row
``i`` sits at ``time_h = i`` hours after the start of the typical year, whatever the file's
own hour-labelling convention; the first row's timestamp, as the reader labels it, is kept
in ``start``. :meth:`WeatherSeries.at` interpolates linearly in time and refuses times past
the end of the year: a run longer than the file is an error, never a silent wrap.

Specs understood by :func:`load_weather`:

- ``"pvlib:miami"``: the Miami, FL TMY2 file shipped with pvlib (hot and humid, the default),
- ``"pvlib:greensboro"``: the Greensboro, NC TMY3 file shipped with pvlib (temperate, humid
  subtropical: cold winters, hot summers, long shoulder seasons),
- ``"pvlib:sand-point"``: the Sand Point, AK TMY3 file shipped with pvlib (cold),
- a path to an ``.epw``, ``.tm2`` or TMY3 ``.csv`` file.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import ArrayLike, NDArray

from physics.constants import HOURS_PER_DAY, STANDARD_PRESSURE_PA
from physics.psychrometrics import (
    dew_point_from_rh_c,
    humidity_ratio_from_rh,
    rel_hum_from_dew_point,
    wet_bulb_from_dew_point_c,
    wet_bulb_from_rh_c,
)
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

__all__ = [
    "PVLIB_WEATHER_FILES",
    "WeatherError",
    "WeatherSample",
    "WeatherSeries",
    "hour_of_year",
    "load_weather",
]

PVLIB_DATA_DIR = Path(pvlib.__file__).resolve().parent / "data"
"""Folder of the sample data files that ship inside the pvlib package."""

PVLIB_WEATHER_FILES: dict[str, str] = {
    "miami": "12839.tm2",
    "greensboro": "723170TYA.CSV",
    "sand-point": "703165TY.csv",
}
"""``pvlib:<name>`` specs and the pvlib sample file each one reads."""

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_HPA_TO_PA = 100.0

# Plausibility bounds: values outside are treated as missing (EPW uses 99.9 / 999 / 999999
# and TMY3 uses -9900 as missing-data codes) and filled by linear interpolation in time.
_TEMP_RANGE_C = (-90.0, 70.0)
_RH_RANGE_PCT = (0.0, 110.0)
_PRESSURE_RANGE_PA = (30_000.0, 120_000.0)


_SERIES_ARRAY_FIELDS = (
    "time_h",
    "dry_bulb_c",
    "dew_point_c",
    "rel_hum_frac",
    "wet_bulb_c",
    "pressure_pa",
)


class WeatherError(TwinLoopError, ValueError):
    """A weather spec cannot be loaded, or a time lies outside the weather series."""


def _as_float_array(value: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True)
class WeatherSample:
    """Weather at one or more instants (arrays of the shape of the requested times)."""

    dry_bulb_c: NDArray[np.float64]
    wet_bulb_c: NDArray[np.float64]
    rel_hum_frac: NDArray[np.float64]
    dew_point_c: NDArray[np.float64]
    pressure_pa: NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class WeatherSeries:
    """An hourly weather series. Arrays are 1-D float64, equal length, finite and read-only."""

    time_h: NDArray[np.float64]
    dry_bulb_c: NDArray[np.float64]
    dew_point_c: NDArray[np.float64]
    rel_hum_frac: NDArray[np.float64]
    wet_bulb_c: NDArray[np.float64]
    pressure_pa: NDArray[np.float64]
    source: str
    start: pd.Timestamp | None = field(default=None)

    def __post_init__(self) -> None:
        n = None
        for name in _SERIES_ARRAY_FIELDS:
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError(f"WeatherSeries.{name} must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
                if n < 2:
                    raise ValueError(f"WeatherSeries.{name} needs at least 2 samples, got {n}")
            elif arr.shape[0] != n:
                raise ValueError(
                    f"WeatherSeries.{name} has length {arr.shape[0]}, expected {n} (as time_h)"
                )
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"WeatherSeries.{name} contains non-finite values")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if np.any(np.diff(self.time_h) <= 0.0):
            raise ValueError("WeatherSeries.time_h must be strictly increasing")
        if np.any((self.rel_hum_frac < 0.0) | (self.rel_hum_frac > 1.0)):
            raise ValueError("WeatherSeries.rel_hum_frac must lie in [0, 1]")
        if np.any(self.pressure_pa <= 0.0):
            raise ValueError("WeatherSeries.pressure_pa must be positive")

    def __len__(self) -> int:
        return int(self.time_h.shape[0])

    @property
    def end_h(self) -> float:
        """First time (h) that :meth:`at` refuses: one hour past the last sample."""
        return float(self.time_h[-1]) + 1.0

    def at(self, time_h: ArrayLike) -> WeatherSample:
        """Weather at ``time_h`` (hours), linearly interpolated between hourly samples.

        Times in the last hour (after the last sample, before :attr:`end_h`) hold the last
        sample. Raises :class:`WeatherError` for any time outside ``[time_h[0], end_h)``.
        """
        t = _as_float_array(time_h)
        t0 = float(self.time_h[0])
        outside = ~np.isfinite(t) | (t < t0) | (t >= self.end_h)
        if np.any(outside):
            bad = float(t[outside].flat[0])
            raise WeatherError(
                f"time {bad:g} h is outside the weather series [{t0:g}, {self.end_h:g}) h "
                f"of {self.source}"
            )

        def interp(values: NDArray[np.float64]) -> NDArray[np.float64]:
            return _as_float_array(np.interp(t, self.time_h, values))

        return WeatherSample(
            dry_bulb_c=interp(self.dry_bulb_c),
            wet_bulb_c=interp(self.wet_bulb_c),
            rel_hum_frac=interp(self.rel_hum_frac),
            dew_point_c=interp(self.dew_point_c),
            pressure_pa=interp(self.pressure_pa),
        )

    def with_offset(
        self, dry_bulb_offset_c: float, keep_humidity_ratio: bool = True
    ) -> WeatherSeries:
        """The series with the dry bulb shifted by ``dry_bulb_offset_c`` everywhere.

        With ``keep_humidity_ratio`` the moisture content is kept (dew point unchanged,
        relative humidity falls as it warms); otherwise the relative humidity is kept (dew
        point rises with the dry bulb). The wet bulb is recomputed either way.
        """
        offset = np.full(len(self), float(dry_bulb_offset_c))
        return self._shifted(
            offset, keep_humidity_ratio, f"{self.source} {dry_bulb_offset_c:+g} °C"
        )

    def heat_wave(
        self,
        start_h: float,
        duration_h: float,
        peak_offset_c: float,
        ramp_h: float | None = None,
        keep_humidity_ratio: bool = True,
    ) -> WeatherSeries:
        """Add a heat wave: a dry-bulb offset, zero outside ``[start_h, start_h + duration_h]``.

        The offset rises from 0 to ``peak_offset_c`` over ``ramp_h`` hours with a raised
        cosine, holds, and falls back the same way (a Tukey window). ``ramp_h`` defaults to
        half the duration: a pure raised cosine whose peak is at the middle of the window.
        Samples outside the window are left untouched.
        """
        if not (math.isfinite(duration_h) and duration_h > 0.0):
            raise ValueError(f"heat_wave duration_h must be positive, got {duration_h}")
        if not (math.isfinite(start_h) and math.isfinite(peak_offset_c)):
            raise ValueError("heat_wave start_h and peak_offset_c must be finite")
        ramp = duration_h / 2.0 if ramp_h is None else ramp_h
        if not (0.0 < ramp <= duration_h / 2.0):
            raise ValueError(f"heat_wave ramp_h must lie in (0, duration_h/2], got {ramp_h}")
        offset = peak_offset_c * _tukey(self.time_h - start_h, duration_h, ramp)
        label = (
            f"{self.source} heat wave {peak_offset_c:+g} °C at {start_h:g} h for {duration_h:g} h"
        )
        return self._shifted(offset, keep_humidity_ratio, label)

    def _shifted(
        self, offset_c: NDArray[np.float64], keep_humidity_ratio: bool, source: str
    ) -> WeatherSeries:
        mask = offset_c != 0.0
        dry = self.dry_bulb_c.copy()
        dew = self.dew_point_c.copy()
        rh = self.rel_hum_frac.copy()
        wet = self.wet_bulb_c.copy()
        if np.any(mask):
            new_dry = dry[mask] + offset_c[mask]
            pressure = self.pressure_pa[mask]
            if keep_humidity_ratio:
                # Same humidity ratio and pressure ⇒ same vapour pressure ⇒ same dew point.
                new_dew = np.minimum(dew[mask], new_dry)
                new_rh = rel_hum_from_dew_point(new_dry, new_dew)
                new_wet = wet_bulb_from_dew_point_c(new_dry, new_dew, pressure)
            else:
                new_rh = rh[mask]
                new_dew = dew_point_from_rh_c(new_dry, new_rh)
                new_wet = wet_bulb_from_rh_c(new_dry, new_rh, pressure)
            dry[mask], dew[mask], rh[mask], wet[mask] = new_dry, new_dew, new_rh, new_wet
        return WeatherSeries(
            time_h=self.time_h,
            dry_bulb_c=dry,
            dew_point_c=dew,
            rel_hum_frac=rh,
            wet_bulb_c=wet,
            pressure_pa=self.pressure_pa,
            source=source,
            start=self.start,
        )

    def humidity_ratio(self) -> NDArray[np.float64]:
        """Humidity ratio (kg/kg dry air) of every sample."""
        return humidity_ratio_from_rh(self.dry_bulb_c, self.rel_hum_frac, self.pressure_pa)


def _tukey(t_rel_h: NDArray[np.float64], duration_h: float, ramp_h: float) -> NDArray[np.float64]:
    """Tukey window on ``[0, duration_h]`` with raised-cosine ramps of ``ramp_h`` each side."""
    up = np.clip(t_rel_h / ramp_h, 0.0, 1.0)
    down = np.clip((duration_h - t_rel_h) / ramp_h, 0.0, 1.0)
    ramp = np.minimum(up, down)
    window = 0.5 * (1.0 - np.cos(np.pi * ramp))
    return np.where((t_rel_h > 0.0) & (t_rel_h < duration_h), window, 0.0)


def hour_of_year(month: int, day: int, hour: float = 0.0) -> float:
    """Hours from 1 January 00:00 to ``month``/``day`` ``hour``:00 in a non-leap typical year."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    days = _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days:
        raise ValueError(f"day must be 1..{days} for month {month}, got {day}")
    if not (math.isfinite(hour) and 0.0 <= hour < HOURS_PER_DAY):
        raise ValueError(f"hour must lie in [0, 24), got {hour}")
    return (sum(_DAYS_IN_MONTH[: month - 1]) + day - 1) * HOURS_PER_DAY + float(hour)


def _resolve(spec: str) -> Path:
    if spec.startswith("pvlib:"):
        name = spec.removeprefix("pvlib:").strip().lower()
        if name not in PVLIB_WEATHER_FILES:
            known = ", ".join(f"pvlib:{k}" for k in PVLIB_WEATHER_FILES)
            raise WeatherError(f"unknown pvlib weather file {spec!r} (known: {known})")
        path = PVLIB_DATA_DIR / PVLIB_WEATHER_FILES[name]
        if not path.is_file():
            raise WeatherError(f"pvlib sample weather file missing: {path}")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeatherError(f"weather file not found: {spec}")
    return path


def _clean(
    values: ArrayLike, bounds: tuple[float, float], name: str, path: Path
) -> NDArray[np.float64]:
    """Values outside ``bounds`` (missing-data codes) become NaN."""
    arr = np.array(values, dtype=np.float64)
    arr[~((arr >= bounds[0]) & (arr <= bounds[1]))] = np.nan
    n_missing = int(np.count_nonzero(np.isnan(arr)))
    if n_missing:
        logger.warning("%s: %d missing/implausible %s values", path.name, n_missing, name)
    return arr


def _fill(values: NDArray[np.float64], name: str, path: Path) -> NDArray[np.float64]:
    """Fill NaN gaps by linear interpolation in time (holding at the ends)."""
    valid = ~np.isnan(values)
    if not np.any(valid):
        raise WeatherError(f"weather file {path} has no valid {name} values")
    if np.all(valid):
        return values
    idx = np.arange(values.shape[0], dtype=np.float64)
    return _as_float_array(np.interp(idx, idx[valid], values[valid]))


# (column, factor to SI) for dry bulb °C, dew point °C, relative humidity %, pressure Pa.
_Columns = tuple[tuple[str, float], tuple[str, float], tuple[str, float], tuple[str, float]]


def _read(path: Path) -> tuple[pd.DataFrame, dict[str, Any], _Columns]:
    """Read ``path`` with the pvlib reader for its extension."""
    suffix = path.suffix.lower()
    cols: _Columns
    try:
        if suffix == ".tm2":
            # TMY2: temperatures in tenths of °C, RH in %, pressure in mbar.
            data, meta = pvlib.iotools.read_tmy2(str(path))
            cols = (("DryBulb", 0.1), ("DewPoint", 0.1), ("RHum", 1.0), ("Pressure", _HPA_TO_PA))
        elif suffix == ".csv":
            # TMY3 read with map_variables=True: °C, %, mbar.
            data, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
            cols = (
                ("temp_air", 1.0),
                ("temp_dew", 1.0),
                ("relative_humidity", 1.0),
                ("pressure", _HPA_TO_PA),
            )
        elif suffix == ".epw":
            # EPW: °C, %, Pa.
            data, meta = pvlib.iotools.read_epw(str(path))
            cols = (
                ("temp_air", 1.0),
                ("temp_dew", 1.0),
                ("relative_humidity", 1.0),
                ("atmospheric_pressure", 1.0),
            )
        else:
            raise WeatherError(
                f"unsupported weather file extension {path.suffix!r} for {path} "
                "(expected .epw, .tm2 or TMY3 .csv)"
            )
    except WeatherError:
        raise
    except Exception as exc:  # pvlib raises many kinds of error on a malformed file
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeatherError(f"could not read weather file {path}: {first_line}") from exc
    missing = [c for c, _ in cols if c not in data.columns]
    if missing:
        raise WeatherError(
            f"weather file {path} lacks columns {missing} (pvlib {pvlib.__version__})"
        )
    if len(data) < 2:
        raise WeatherError(f"weather file {path} has {len(data)} rows, need at least 2")
    return data, dict(meta), cols


def _describe(path: Path, meta: dict[str, Any]) -> str:
    place = ", ".join(
        str(meta[k]).strip().strip('"')
        for k in ("City", "Name", "city", "State", "state-prov")
        if meta.get(k) not in (None, "", "-")
    )
    return f"{path.name} ({place})" if place else path.name


@functools.lru_cache(maxsize=32)
def load_weather(spec: str) -> WeatherSeries:
    """Load a typical-year weather series from ``spec`` (``"pvlib:<name>"`` or a file path).

    Results are cached per spec string and per resolved file (a file edited after its first
    load is not re-read in the same process); the returned series is immutable.
    """
    return _load_file(_resolve(spec).resolve())


@functools.lru_cache(maxsize=32)
def _load_file(path: Path) -> WeatherSeries:
    data, meta, cols = _read(path)
    (dry_col, dry_k), (dew_col, dew_k), (rh_col, rh_k), (p_col, p_k) = cols

    def column(name: str, factor: float) -> NDArray[np.float64]:
        return data[name].to_numpy(dtype=np.float64) * factor

    dry_c = _fill(_clean(column(dry_col, dry_k), _TEMP_RANGE_C, "dry bulb", path), "dry bulb", path)
    dew_raw = _clean(column(dew_col, dew_k), _TEMP_RANGE_C, "dew point", path)
    rh_pct = _clean(column(rh_col, rh_k), _RH_RANGE_PCT, "relative humidity", path)
    pressure_raw = _clean(column(p_col, p_k), _PRESSURE_RANGE_PA, "pressure", path)

    # The dew point (0.1 °C resolution) is the primary moisture variable; where it is
    # missing but the relative humidity is present, derive it from the relative humidity.
    gap = np.isnan(dew_raw) & ~np.isnan(rh_pct)
    if np.any(gap):
        dew_raw[gap] = dew_point_from_rh_c(dry_c[gap], rh_pct[gap] / 100.0)
    dew_c = np.minimum(_fill(dew_raw, "dew point", path), dry_c)
    if np.all(np.isnan(pressure_raw)):
        logger.warning("%s: no valid pressure, using standard pressure", path.name)
        pressure_pa = np.full(dry_c.shape, STANDARD_PRESSURE_PA)
    else:
        pressure_pa = _fill(pressure_raw, "pressure", path)
    rel_hum_frac = rel_hum_from_dew_point(dry_c, dew_c)
    wet_bulb_c = wet_bulb_from_dew_point_c(dry_c, dew_c, pressure_pa)

    index = data.index
    start = pd.Timestamp(index[0]) if isinstance(index, pd.DatetimeIndex) else None
    series = WeatherSeries(
        time_h=np.arange(len(data), dtype=np.float64),
        dry_bulb_c=dry_c,
        dew_point_c=dew_c,
        rel_hum_frac=rel_hum_frac,
        wet_bulb_c=wet_bulb_c,
        pressure_pa=pressure_pa,
        source=_describe(path, meta),
        start=start,
    )
    logger.info(
        "loaded weather %s: %d h, dry bulb mean %.1f °C, wet bulb max %.1f °C",
        series.source,
        len(series),
        float(np.mean(dry_c)),
        float(np.max(wet_bulb_c)),
    )
    return series
