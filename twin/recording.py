"""Recordings: plant runs kept as a historian would keep them, the twin's training data.

A recording holds what a site's BMS historian would: every sensor reading, and the setpoint
commands a controller sent (``cmd.<setpoint>``, NaN while the site's own control was in
charge). The plant's hidden ground truth is never written. Each run is one Parquet file with
a JSON sidecar of metadata, named ``<scenario>-<policy>-s<seed>``.

To cover the operating envelope the runs use an :class:`ExplorationPolicy`: every setpoint
independently held at a random value for a random time, sometimes left to the site.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from physics.plant.scenario import Scenario
from physics.plant.sensors import SensorFrame, point_catalog
from physics.plant.simulation import run_scenario
from physics.plant.site_control import SetpointCommand
from twin.spaces import ACTION_NAMES, ActionScale
from twinloop.errors import TwinLoopError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

RECORDING_POLICIES: tuple[str, ...] = ("explore", "site")
"""``explore``: :class:`ExplorationPolicy`; ``site``: no policy, the site's built-in control."""

CW_INDEX = ACTION_NAMES.index("cw_supply_c")

CMD_COLUMNS: tuple[str, ...] = tuple(f"cmd.{name}" for name in ACTION_NAMES)
"""The commanded setpoints in a recording, in :data:`twin.spaces.ACTION_NAMES` order."""

FORMAT_VERSION = 1

_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class RecordingError(TwinLoopError, ValueError):
    """A recording that cannot be written or read; the message names the file and problem."""


class ExplorationPolicy:
    """Random setpoint holds that cover the envelope: a :data:`~physics.plant.simulation.Policy`.

    Each of the five setpoints is held, independently of the others, for a whole number of
    control periods drawn uniformly between ``hold_min_s`` and ``hold_max_s``; at the start of
    a hold its value is drawn uniformly in the :class:`ActionScale` range (economiser on with
    probability ``economiser_on_prob``), or, with probability ``site_share``, the component is
    left to the site (omitted from the command). Condenser water is drawn from ``cw_floor_c``
    up, or from where the tower can still make it in cold weather (wet bulb +
    ``tower_approach_k``), so warm-climate data is not spent on water the tower cannot make
    (the action reaches 10 °C for the economiser since issue 15). Every command expires two
    control periods after it is issued and is kept in :meth:`history`.
    """

    def __init__(
        self,
        *,
        control_period_s: float,
        seed: int | tuple[int, ...] = 0,
        scale: ActionScale | None = None,
        site_share: float = 0.2,
        hold_min_s: float = 900.0,
        hold_max_s: float = 10_800.0,
        economiser_on_prob: float = 0.3,
        cw_floor_c: float = 18.0,
        tower_approach_k: float = 3.0,
    ) -> None:
        if not (math.isfinite(control_period_s) and control_period_s > 0):
            raise ValueError(f"control_period_s must be positive, got {control_period_s}")
        if not 0.0 <= site_share <= 1.0:
            raise ValueError(f"site_share must lie in [0, 1], got {site_share}")
        if not 0.0 <= economiser_on_prob <= 1.0:
            raise ValueError(f"economiser_on_prob must lie in [0, 1], got {economiser_on_prob}")
        if not 0.0 < hold_min_s <= hold_max_s:
            raise ValueError(f"need 0 < hold_min_s <= hold_max_s, got {hold_min_s}, {hold_max_s}")
        self.control_period_s = float(control_period_s)
        self.seed = seed
        self._id = "-".join(str(s) for s in np.atleast_1d(seed))
        self.scale = scale if scale is not None else ActionScale()
        self.site_share = site_share
        self.economiser_on_prob = economiser_on_prob
        self.hold_periods = (
            max(1, math.ceil(hold_min_s / control_period_s - 1e-9)),
            max(1, math.floor(hold_max_s / control_period_s + 1e-9)),
        )
        if self.hold_periods[1] < self.hold_periods[0]:
            self.hold_periods = (self.hold_periods[0], self.hold_periods[0])
        self._rng = np.random.default_rng(seed)
        self._low, self._high = self.scale.low, self.scale.high
        self.cw_floor_c = cw_floor_c
        self.tower_approach_k = tower_approach_k
        self._value = np.full(len(ACTION_NAMES), np.nan)
        self._periods_left = np.zeros(len(ACTION_NAMES), dtype=np.int64)
        self._issued: list[tuple[float, float, FloatArray]] = []

    def __call__(self, frame: SensorFrame, time_s: float) -> SetpointCommand:
        for i in range(len(ACTION_NAMES)):
            if self._periods_left[i] <= 0:
                self._periods_left[i] = self._rng.integers(
                    self.hold_periods[0], self.hold_periods[1], endpoint=True
                )
                to_site = self._rng.random() < self.site_share
                draw = self._rng.random()
                if to_site:
                    self._value[i] = np.nan
                elif i == len(ACTION_NAMES) - 1:  # economiser enable
                    self._value[i] = float(draw < self.economiser_on_prob)
                else:
                    low = self._cw_low(frame) if i == CW_INDEX else self._low[i]
                    self._value[i] = low + draw * (self._high[i] - low)
            self._periods_left[i] -= 1
        expires_at_s = time_s + 2.0 * self.control_period_s
        values = self._value.copy()
        self._issued.append((float(time_s), expires_at_s, values))
        fields = {
            name: None if math.isnan(v) else float(v)
            for name, v in zip(ACTION_NAMES, values, strict=True)
        }
        return SetpointCommand(
            command_id=f"explore-{self._id}-{len(self._issued):06d}",
            expires_at_s=expires_at_s,
            **fields,
        )

    def _cw_low(self, frame: SensorFrame) -> float:
        """Lowest condenser water to draw: ``cw_floor_c``, or lower where the wet bulb lets
        the tower make it (wet bulb + ``tower_approach_k``), never below the scale. Draws
        the tower cannot reach would all record the same full-fan operation."""
        low = float(self._low[CW_INDEX])
        try:
            wet_bulb = float(frame.values[0, frame.names.index("outdoor_wet_bulb_c")])
        except ValueError:
            wet_bulb = math.nan
        if not math.isfinite(wet_bulb):
            return max(low, self.cw_floor_c)
        return max(low, min(self.cw_floor_c, wet_bulb + self.tower_approach_k))

    @classmethod
    def for_scenario(cls, scenario: Scenario, seed: int) -> ExplorationPolicy:
        """The exploration :func:`record_run` uses: the scenario's control period and actuator
        envelope, seeded by ``seed`` and the scenario's name (so two scenarios recorded with
        the same seed do not repeat one command sequence)."""
        return cls(
            control_period_s=scenario.control_period_s,
            seed=(seed, zlib.crc32(scenario.name.encode("utf-8"))),
            scale=ActionScale.within(scenario.site.limits),
        )

    def history(self) -> pd.DataFrame:
        """Every command issued: ``time_s``, ``expires_at_s`` and the five setpoints (NaN where
        left to the site), one row per call, in order."""
        columns = ["time_s", "expires_at_s", *ACTION_NAMES]
        if not self._issued:
            return pd.DataFrame({name: pd.Series(dtype=np.float64) for name in columns})
        rows = [[t, e, *v] for t, e, v in self._issued]
        return pd.DataFrame(rows, columns=columns, dtype=np.float64)


def commands_in_force(history: pd.DataFrame, step_times_s: FloatArray) -> FloatArray:
    """The commanded setpoints (steps, 5) in force at each plant step time.

    As the plant holds commands: the latest one issued at or before the step, while it has not
    expired; NaN where no command is valid or it left the setpoint to the site.
    """
    times = np.asarray(step_times_s, dtype=np.float64)
    out = np.full((times.shape[0], len(ACTION_NAMES)), np.nan)
    if history.empty:
        return out
    issued = history["time_s"].to_numpy(dtype=np.float64)
    if np.any(np.diff(issued) < 0):
        raise ValueError("command history must be in time order")
    expires = history["expires_at_s"].to_numpy(dtype=np.float64)
    values = history[list(ACTION_NAMES)].to_numpy(dtype=np.float64)
    latest = np.searchsorted(issued, times, side="right") - 1
    safe = np.maximum(latest, 0)
    valid = (latest >= 0) & (times < expires[safe])
    out[valid] = values[safe[valid]]
    return out


@dataclass(frozen=True)
class RecordingMeta:
    """The sidecar of a recording: what was run, on which site, and the sensor points."""

    scenario: str
    source: str
    site_variant: str
    site_seed: int
    n_pods: int
    racks_per_pod: int
    step_s: float
    control_period_s: float
    start_h: float
    duration_h: float
    policy: str
    seed: int
    weather_file: str
    twinloop_version: str
    points: Mapping[str, str] = field(hash=False)
    """Sensor point name → unit, in column order."""
    heat_wave: tuple[float, float, float] | None = None
    """(start from the run start in h, duration in h, peak offset in K), if any."""
    faults: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    """The scenario's fault events (kind, start_h, duration_h, magnitude, target)."""
    format_version: int = FORMAT_VERSION

    @property
    def site_key(self) -> tuple[str, int, int, int]:
        """What identifies the physical site: variant, seed, pods, racks per pod."""
        return (self.site_variant, self.site_seed, self.n_pods, self.racks_per_pod)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the recording's table must have."""
        return ("time_h", *self.points, *CMD_COLUMNS)

    @classmethod
    def for_run(cls, scenario: Scenario, *, policy: str, seed: int) -> RecordingMeta:
        site = scenario.site
        return cls(
            scenario=scenario.name,
            source=scenario.source,
            site_variant=site.name,
            site_seed=scenario.site_seed,
            n_pods=site.n_pods,
            racks_per_pod=site.racks_per_pod,
            step_s=scenario.step_s,
            control_period_s=scenario.control_period_s,
            start_h=scenario.start_h,
            duration_h=scenario.duration_h,
            policy=policy,
            seed=seed,
            weather_file=scenario.weather_file,
            twinloop_version=_twinloop_version(),
            points={p.name: p.unit for p in point_catalog(site)},
            heat_wave=scenario.heat_wave,
            faults=tuple(asdict(f) for f in scenario.faults),
        )

    def to_json(self) -> str:
        payload = asdict(self)
        payload["points"] = dict(self.points)
        payload["faults"] = [dict(f) for f in self.faults]
        payload["heat_wave"] = list(self.heat_wave) if self.heat_wave is not None else None
        return json.dumps(payload, indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> RecordingMeta:
        """Validate a parsed sidecar; problems raise :class:`RecordingError` naming ``where``."""
        if not isinstance(raw, dict):
            raise RecordingError(f"recording {where}: expected a JSON object of metadata")
        missing = [name for name in _REQUIRED_META if name not in raw]
        if missing:
            raise RecordingError(f"recording {where}: metadata misses {', '.join(missing)}")
        if raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise RecordingError(
                f"recording {where}: format_version {raw['format_version']!r} "
                f"(this TwinLoop reads {FORMAT_VERSION})"
            )
        points = raw["points"]
        if not isinstance(points, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in points.items()
        ):
            raise RecordingError(f"recording {where}: points must map point names to units")
        try:
            heat_wave = raw.get("heat_wave")
            return cls(
                scenario=_typed(raw, "scenario", str),
                source=_typed(raw, "source", str),
                site_variant=_typed(raw, "site_variant", str),
                site_seed=_typed(raw, "site_seed", int),
                n_pods=_typed(raw, "n_pods", int),
                racks_per_pod=_typed(raw, "racks_per_pod", int),
                step_s=float(_typed(raw, "step_s", (int, float))),
                control_period_s=float(_typed(raw, "control_period_s", (int, float))),
                start_h=float(_typed(raw, "start_h", (int, float))),
                duration_h=float(_typed(raw, "duration_h", (int, float))),
                policy=_typed(raw, "policy", str),
                seed=_typed(raw, "seed", int),
                weather_file=_typed(raw, "weather_file", str),
                twinloop_version=_typed(raw, "twinloop_version", str),
                points=dict(points),
                heat_wave=None
                if heat_wave is None
                else (float(heat_wave[0]), float(heat_wave[1]), float(heat_wave[2])),
                faults=tuple(dict(f) for f in raw.get("faults", [])),
            )
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise RecordingError(f"recording {where}: metadata: {exc}") from None


_REQUIRED_META: tuple[str, ...] = (
    "scenario",
    "source",
    "site_variant",
    "site_seed",
    "n_pods",
    "racks_per_pod",
    "step_s",
    "control_period_s",
    "start_h",
    "duration_h",
    "policy",
    "seed",
    "weather_file",
    "twinloop_version",
    "points",
)


def _typed(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key} has the wrong type ({value!r})")
    return value


def _twinloop_version() -> str:
    try:
        return metadata.version("twinloop")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Recording:
    """One recorded run: the table (``time_h``, sensor points, ``cmd.*``) and its metadata."""

    name: str
    path: Path
    frame: pd.DataFrame = field(hash=False, compare=False)
    meta: RecordingMeta


def recording_path(
    scenario: Scenario, *, policy: str, seed: int, out_dir: Path, overwrite: bool = False
) -> Path:
    """Where :func:`record_run` will write, after checking it may: a known policy, a scenario
    name usable as a file name, and no existing recording unless ``overwrite``."""
    if policy not in RECORDING_POLICIES:
        raise RecordingError(
            f"unknown recording policy {policy!r} (known: {', '.join(RECORDING_POLICIES)})"
        )
    stem = f"{scenario.name}-{policy}-s{seed}"
    if _STEM.fullmatch(stem) is None:
        raise RecordingError(
            f"scenario {scenario.source}: name {scenario.name!r} cannot name a recording file "
            "(use letters, digits, '.', '_' and '-')"
        )
    parquet = out_dir / f"{stem}.parquet"
    if not overwrite:
        for path in (parquet, parquet.with_suffix(".json")):
            if path.exists():
                raise RecordingError(
                    f"recording {path}: already exists (overwrite it with --overwrite)"
                )
    return parquet


def record_run(
    scenario: Scenario,
    *,
    policy: str = "explore",
    seed: int = 0,
    out_dir: Path,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Run ``scenario`` under ``policy`` and write its recording; returns the Parquet path.

    ``explore`` runs :meth:`ExplorationPolicy.for_scenario` (seeded by ``seed`` and the
    scenario's name); ``site`` leaves the site's built-in control in charge. Writes
    ``out_dir/<scenario>-<policy>-s<seed>.parquet`` and its ``.json`` sidecar, never the ground
    truth, and refuses to replace an existing recording unless ``overwrite``.
    """
    parquet = recording_path(
        scenario, policy=policy, seed=seed, out_dir=out_dir, overwrite=overwrite
    )
    sidecar = parquet.with_suffix(".json")
    explorer = ExplorationPolicy.for_scenario(scenario, seed) if policy == "explore" else None
    result = run_scenario(scenario, explorer, progress=progress)
    frame = result.readings.copy()
    if explorer is not None:
        step_times_s = np.arange(len(frame), dtype=np.float64) * scenario.step_s
        commanded = commands_in_force(explorer.history(), step_times_s)
    else:
        commanded = np.full((len(frame), len(CMD_COLUMNS)), np.nan)
    for i, column in enumerate(CMD_COLUMNS):
        frame[column] = commanded[:, i]
    meta = RecordingMeta.for_run(scenario, policy=policy, seed=seed)
    if list(frame.columns) != list(meta.columns):
        raise RuntimeError("plant readings do not match the site's point catalogue")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Write both under temporary names, then move them into place: a crash never leaves a
    # table without its sidecar, and load_recordings never sees a half-written file.
    tmp_parquet = parquet.with_name(parquet.name + ".tmp")
    tmp_sidecar = sidecar.with_name(sidecar.name + ".tmp")
    frame.to_parquet(tmp_parquet, index=False)
    tmp_sidecar.write_text(meta.to_json(), encoding="utf-8")
    os.replace(tmp_parquet, parquet)
    os.replace(tmp_sidecar, sidecar)
    logger.info("recorded %s (%d steps, policy %s, seed %d)", parquet, len(frame), policy, seed)
    return parquet


def load_recordings(data_dir: Path) -> list[Recording]:
    """Every recording (``*.parquet`` with its ``.json`` sidecar) in ``data_dir``, by name.

    All must come from the same site (variant, site seed, pods, racks per pod). Any problem —
    no such directory, no recordings, a table without its sidecar or the reverse, a file that
    cannot be read, missing columns, mixed sites — raises :class:`RecordingError`.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise RecordingError(f"recordings {data_dir}: no such directory")
    tables = sorted(data_dir.glob("*.parquet"))
    sidecars = sorted(data_dir.glob("*.json"))
    if not tables:
        raise RecordingError(
            f"recordings {data_dir}: no recordings (*.parquet with a .json sidecar) found"
        )
    stems = {p.stem for p in tables}
    for orphan in sidecars:
        if orphan.stem not in stems:
            raise RecordingError(f"recording {orphan}: metadata without its .parquet table")
    recordings: list[Recording] = []
    for table in tables:
        sidecar = table.with_suffix(".json")
        if not sidecar.is_file():
            raise RecordingError(f"recording {table}: no {sidecar.name} metadata beside it")
        try:
            raw = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordingError(f"recording {sidecar}: cannot read metadata ({exc})") from None
        meta = RecordingMeta.from_dict(raw, str(sidecar))
        try:
            frame = pd.read_parquet(table)
        except (OSError, ValueError) as exc:
            raise RecordingError(f"recording {table}: cannot read the table ({exc})") from None
        missing = [c for c in meta.columns if c not in frame.columns]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            shown = ", ".join(missing[:5]) + more
            raise RecordingError(f"recording {table}: missing columns {shown}")
        if recordings and meta.site_key != recordings[0].meta.site_key:
            first = recordings[0]
            raise RecordingError(
                f"recording {table}: site {_site_text(meta)} differs from "
                f"{_site_text(first.meta)} of {first.path.name}; keep one site per directory"
            )
        recordings.append(Recording(name=table.stem, path=table, frame=frame, meta=meta))
    logger.info("loaded %d recording(s) from %s", len(recordings), data_dir)
    return recordings


def _site_text(meta: RecordingMeta) -> str:
    return (
        f"{meta.site_variant} (seed {meta.site_seed}, {meta.n_pods} pods × "
        f"{meta.racks_per_pod} racks)"
    )
