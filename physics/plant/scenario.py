"""Scenario files: a small YAML document that fixes everything a run depends on.

Times carry their unit as a string (``"7 d"``, ``"168 h"``, ``"5 min"``, ``"60 s"``);
temperature differences as ``"4 K"``. Loading validates the whole file and turns the first
problem into one line that names the field, e.g.
``scenario bad.yaml: faults[0].kind: unknown fault kind 'meteor' (known: ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from physics.plant.faults import FAULT_KINDS, FaultEvent, FaultSchedule
from physics.plant.sensors import SensorNoise, point_catalog
from physics.plant.site import SITE_VARIANTS, SiteConfig, site_variant
from physics.weather import WeatherError, WeatherSeries, hour_of_year, load_weather
from physics.workload import TRACE_DATASETS, WorkloadSpec
from twinloop.errors import TwinLoopError

_TIME_UNITS_S = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_QUANTITY = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)\s*$")


class ScenarioError(TwinLoopError, ValueError):
    """A scenario file that cannot be run; the message is one line naming the problem."""


def _quantity(value: Any, units: dict[str, float], what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"needs a {what} with a unit, e.g. '7 d' (got {value!r})")
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"cannot read {value!r} as a {what} with a unit")
    number, unit = float(match.group(1)), match.group(2)
    if unit not in units:
        raise ValueError(f"unknown {what} unit {unit!r} (use {', '.join(units)})")
    return number * units[unit]


def parse_duration_s(value: Any) -> float:
    """Seconds in a duration string such as ``"7 d"``, ``"90 min"`` or ``"60 s"``."""
    return _quantity(value, _TIME_UNITS_S, "time")


def parse_delta_k(value: Any) -> float:
    """Kelvin in a temperature-difference string such as ``"4 K"``."""
    return _quantity(value, {"K": 1.0}, "temperature difference")


def _duration_text(value: Any) -> str:
    parse_duration_s(value)
    return str(value)


def _positive_duration_text(value: Any) -> str:
    if parse_duration_s(value) <= 0:
        raise ValueError(f"must be positive (got {value!r})")
    return str(value)


def _delta_text(value: Any) -> str:
    parse_delta_k(value)
    return str(value)


def _one_of(known: Iterable[str], what: str) -> AfterValidator:
    """A validator that accepts only the names in ``known`` and says which ones exist."""
    names = tuple(known)

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"unknown {what} {value!r} (known: {', '.join(names)})")
        return value

    return AfterValidator(check)


Duration = Annotated[str, BeforeValidator(_duration_text)]
"""A time with its unit, e.g. ``"36 h"`` (zero allowed)."""
PositiveDuration = Annotated[str, BeforeValidator(_positive_duration_text)]
"""A strictly positive time with its unit, e.g. ``"7 d"``."""
TemperatureDelta = Annotated[str, BeforeValidator(_delta_text)]
"""A temperature difference with its unit, e.g. ``"5 K"``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSpec(_Strict):
    variant: Annotated[str, _one_of(SITE_VARIANTS, "site variant")] = "reference"
    seed: int = 0


class HeatWaveSpec(_Strict):
    start: Duration
    duration: PositiveDuration
    peak_offset: TemperatureDelta


class WeatherSpec(_Strict):
    file: str = "pvlib:miami"
    start: str = "01-01"
    """Month-day (and optional HH:MM) in the typical year, e.g. ``"07-01"`` or ``"07-01 06:00"``."""
    heat_wave: HeatWaveSpec | None = None

    @field_validator("start")
    @classmethod
    def _date(cls, v: str) -> str:
        _start_hour(v)
        return v


def _start_hour(text: str) -> float:
    match = re.fullmatch(r"\s*(\d{1,2})-(\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?\s*", str(text))
    if match is None:
        raise ValueError(f"start must look like 'MM-DD' or 'MM-DD HH:MM' (got {text!r})")
    month, day = int(match.group(1)), int(match.group(2))
    hour = int(match.group(3) or 0) + int(match.group(4) or 0) / 60.0
    try:
        return hour_of_year(month, day, hour)
    except ValueError as exc:
        raise ValueError(f"start {text!r}: {exc}") from None


class WorkloadModel(_Strict):
    kind: Literal["constant", "diurnal", "bursty", "trace"] = "diurnal"
    mean_frac: float = Field(0.6, ge=0.0, le=1.0)
    amplitude_frac: float = Field(0.15, ge=0.0, le=1.0)
    dataset: Annotated[str, _one_of(TRACE_DATASETS, "trace dataset")] = "alibaba2018"
    burst_rate_per_h: float = Field(0.2, ge=0.0)
    burst_height_frac: float = Field(0.2, ge=0.0, le=1.0)
    burst_duration: PositiveDuration = "30 min"


class FaultModel(_Strict):
    kind: Annotated[str, _one_of(FAULT_KINDS, "fault kind")]
    at: Duration
    duration: PositiveDuration | None = None
    magnitude: float | None = None
    target: int | str | None = None


class NoiseModel(_Strict):
    """Sensor quality in detail (a bare number in the file sets only ``level``)."""

    level: float = Field(1.0, ge=0.0, le=10.0)
    temperature_std_c: float = Field(0.1, ge=0.0)
    temperature_bias_std_c: float = Field(0.1, ge=0.0)
    temperature_drift_std_c_per_day: float = Field(0.01, ge=0.0)
    relative_std: float = Field(0.01, ge=0.0, le=0.5)
    fraction_std: float = Field(0.005, ge=0.0, le=0.5)
    dropout_prob: float = Field(0.0, ge=0.0, lt=1.0)


FORECAST_LEVELS: tuple[str, ...] = ("none", "low", "medium", "high")
"""Forecast-error levels a scenario may ask for (``forecast: {level: ...}``); their error
statistics are documented in :mod:`twin.forecast`. ``none`` is perfect foresight."""
DEFAULT_FORECAST_LEVEL = "medium"


class ForecastModel(_Strict):
    """How good the site's weather forecast is (BOPTEST-style uncertainty levels)."""

    level: Annotated[str, _one_of(FORECAST_LEVELS, "forecast level")] = DEFAULT_FORECAST_LEVEL


class ScenarioModel(_Strict):
    name: str
    description: str = ""
    site: SiteSpec = SiteSpec()
    weather: WeatherSpec = WeatherSpec()
    workload: WorkloadModel = WorkloadModel()
    duration: PositiveDuration
    step: PositiveDuration = "60 s"
    control_period: PositiveDuration = "5 min"
    sensor_noise: NoiseModel = NoiseModel()
    faults: list[FaultModel] = []
    forecast: ForecastModel = ForecastModel()
    seed: int = 0

    @field_validator("sensor_noise", mode="before")
    @classmethod
    def _level_alone(cls, v: Any) -> Any:
        """``sensor_noise: 2`` is short for ``sensor_noise: {level: 2}``."""
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"level": v}
        if not isinstance(v, dict):
            raise ValueError(
                f"must be a number (the noise level) or a mapping of noise settings, got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioModel:
        step_s = parse_duration_s(self.step)
        period_s = parse_duration_s(self.control_period)
        if step_s > 300:
            raise ValueError(f"step: at most 300 s per plant step (got {self.step!r})")
        ratio = period_s / step_s
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"control_period: must be a whole number of steps "
                f"({self.control_period!r} / {self.step!r})"
            )
        return self


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with every quantity in plain units."""

    name: str
    description: str
    source: str
    site: SiteConfig
    site_seed: int
    weather_file: str
    start_h: float
    duration_h: float
    step_s: float
    control_period_s: float
    workload: WorkloadSpec
    faults: tuple[FaultEvent, ...]
    noise: SensorNoise
    seed: int
    heat_wave: tuple[float, float, float] | None  # start_h (from run start), duration_h, K
    forecast_level: str = DEFAULT_FORECAST_LEVEL
    """Error level of the site's weather forecast (:data:`FORECAST_LEVELS`)."""

    @property
    def n_steps(self) -> int:
        return round(self.duration_h * 3600.0 / self.step_s)

    @property
    def steps_per_period(self) -> int:
        return round(self.control_period_s / self.step_s)

    def weather(self) -> WeatherSeries:
        """The weather series of the run (heat wave applied), checked to cover the run."""
        series = load_weather(self.weather_file)
        if self.heat_wave is not None:
            start, duration, peak = self.heat_wave
            series = series.heat_wave(self.start_h + start, duration, peak)
        end_h = self.start_h + self.duration_h
        if self.start_h < float(series.time_h[0]) or end_h > series.end_h:
            raise ScenarioError(
                f"scenario {self.source}: weather: the run covers hours {self.start_h:g}–"
                f"{end_h:g} of the year, outside the weather file "
                f"({float(series.time_h[0]):g}–{series.end_h:g} h)"
            )
        return series


def with_forecast_level(scenario: Scenario, level: str) -> Scenario:
    """``scenario`` with its forecast level replaced (``twinloop evaluate --forecast``)."""
    if level not in FORECAST_LEVELS:
        raise ScenarioError(
            f"scenario {scenario.source}: forecast.level: unknown forecast level {level!r} "
            f"(known: {', '.join(FORECAST_LEVELS)})"
        )
    return replace(scenario, forecast_level=level)


def _format_error(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"])
    where = where.replace(".[", "[")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "extra_forbidden":
        message = "unknown field"
    if not where:
        return f"scenario {source}: {message}"
    return f"scenario {source}: {where}: {message}"


def shipped_scenarios() -> dict[str, Path]:
    """Scenario files that ship with TwinLoop, by name."""
    folder = resources.files("physics") / "scenarios"
    return {
        Path(str(entry)).stem: Path(str(entry))
        for entry in folder.iterdir()
        if str(entry).endswith(".yaml")
    }


def load_scenario(spec: str | Path) -> Scenario:
    """Load and validate a scenario from a path or the name of a shipped scenario."""
    path = Path(spec)
    if not path.exists():
        shipped = shipped_scenarios()
        if str(spec) not in shipped:
            raise ScenarioError(
                f"scenario {spec}: no such file, and not a shipped scenario "
                f"(shipped: {', '.join(sorted(shipped))})"
            )
        path = shipped[str(spec)]
    source = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ScenarioError(f"scenario {source}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {source}: expected a mapping of fields at the top level")
    try:
        model = ScenarioModel.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_error(source, exc)) from None
    return _build(model, source)


def _build(model: ScenarioModel, source: str) -> Scenario:
    config = site_variant(model.site.variant)
    faults: list[FaultEvent] = []
    for i, f in enumerate(model.faults):
        try:
            faults.append(
                FaultEvent(
                    kind=f.kind,
                    start_h=parse_duration_s(f.at) / 3600.0,
                    duration_h=None
                    if f.duration is None
                    else parse_duration_s(f.duration) / 3600.0,
                    magnitude=f.magnitude,
                    target=f.target,
                )
            )
        except ValueError as exc:
            raise ScenarioError(f"scenario {source}: faults[{i}]: {exc}") from None
    duration_h = parse_duration_s(model.duration) / 3600.0
    for i, event in enumerate(faults):
        if event.start_h >= duration_h:
            raise ScenarioError(
                f"scenario {source}: faults[{i}].at: {event.start_h:g} h is after the end of "
                f"the run ({duration_h:g} h)"
            )
    heat_wave = None
    if model.weather.heat_wave is not None:
        hw = model.weather.heat_wave
        heat_wave = (
            parse_duration_s(hw.start) / 3600.0,
            parse_duration_s(hw.duration) / 3600.0,
            parse_delta_k(hw.peak_offset),
        )
    w = model.workload
    scenario = Scenario(
        name=model.name,
        description=model.description,
        source=source,
        site=config,
        site_seed=model.site.seed,
        weather_file=model.weather.file,
        start_h=_start_hour(model.weather.start),
        duration_h=duration_h,
        step_s=parse_duration_s(model.step),
        control_period_s=parse_duration_s(model.control_period),
        workload=WorkloadSpec(
            kind=w.kind,
            mean_frac=w.mean_frac,
            amplitude_frac=w.amplitude_frac,
            dataset=w.dataset,
            burst_rate_per_h=w.burst_rate_per_h,
            burst_height_frac=w.burst_height_frac,
            burst_duration_h=parse_duration_s(w.burst_duration) / 3600.0,
        ),
        faults=tuple(faults),
        noise=SensorNoise(**model.sensor_noise.model_dump()),
        seed=model.seed,
        heat_wave=heat_wave,
        forecast_level=model.forecast.level,
    )
    # Fault targets must exist on this site; the weather must cover the run.
    points = {p.name for p in point_catalog(config)}
    for i, event in enumerate(scenario.faults):
        if isinstance(event.target, str) and event.target not in points:
            raise ScenarioError(
                f"scenario {source}: faults[{i}].target: unknown sensor point {event.target!r}"
            )
        try:
            FaultSchedule(
                [event], n_crah=config.n_crah, n_chillers=config.n_chillers, n_pods=config.n_pods
            )
        except ValueError as exc:
            raise ScenarioError(f"scenario {source}: faults[{i}].target: {exc}") from None
    try:
        scenario.weather()
    except WeatherError as exc:
        raise ScenarioError(f"scenario {source}: weather.file: {exc}") from None
    except ScenarioError:
        raise
    except ValueError as exc:
        raise ScenarioError(f"scenario {source}: weather.heat_wave: {exc}") from None
    return scenario
