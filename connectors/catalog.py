"""The site's point catalog as ingestion's allow-list.

A sensor message is stored only when its point is in the catalog, its unit is the point's
own and its value lies inside the bounds of the point's kind. The catalog comes from the
site's design (:func:`physics.plant.sensors.point_catalog`) or, for a site whose points are
listed elsewhere, from a mapping of point names to units. Every unit must be one of
:data:`connectors.payloads.PHYSICAL_RANGE`: a unit without known bounds would let any
value through, so such a catalog is refused when it is built, not at the first message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.payloads import PHYSICAL_RANGE
from physics.plant.sensors import point_catalog
from physics.plant.site import SiteConfig, site_variant

logger = logging.getLogger(__name__)

MAX_POINT_NAME = 128
"""The longest point name a catalog may list (a topic level, not a document)."""


@dataclass(frozen=True)
class PointRule:
    """What a reading of one point must look like."""

    name: str
    unit: str
    low: float
    high: float


class PointCatalog:
    """Allowed points, each with its unit and value bounds (module docstring)."""

    def __init__(
        self,
        units: Mapping[str, str],
        bounds: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        if not units:
            raise ValueError("a point catalog needs at least one point")
        bounds = bounds or {}
        rules: dict[str, PointRule] = {}
        for name, unit in units.items():
            if not name or len(name) > MAX_POINT_NAME:
                raise ValueError(f"point name {name[:40]!r} must have 1 to {MAX_POINT_NAME} chars")
            if unit not in PHYSICAL_RANGE:
                raise ValueError(
                    f"point {name!r}: unit {unit!r} has no physical range "
                    f"(known: {', '.join(PHYSICAL_RANGE)})"
                )
            low, high = PHYSICAL_RANGE[unit]
            if name in bounds:  # tighter bounds for this kind of point, never looser
                low, high = max(low, bounds[name][0]), min(high, bounds[name][1])
            rules[name] = PointRule(name, unit, low, high)
        self._rules = rules

    @classmethod
    def for_site(cls, site: SiteConfig) -> PointCatalog:
        """Every point of ``site``; counts bounded by what the site has."""
        specs = point_catalog(site)
        bounds = {"chillers_on": (0.0, float(site.n_chillers))}
        return cls({p.name: p.unit for p in specs}, bounds)

    @classmethod
    def reference(cls) -> PointCatalog:
        """The reference site's points (the emulator's default plant)."""
        return cls.for_site(site_variant("reference"))

    def rule(self, point: str) -> PointRule | None:
        """The rule of ``point``, or None when it is not in the catalog."""
        return self._rules.get(point)

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(self._rules)

    @property
    def units(self) -> dict[str, str]:
        return {name: rule.unit for name, rule in self._rules.items()}

    def __contains__(self, point: object) -> bool:
        return point in self._rules

    def __len__(self) -> int:
        return len(self._rules)

    def subset(self, points: Iterable[str]) -> PointCatalog:
        """The catalog restricted to ``points`` (each must be in it)."""
        wanted = list(points)
        missing = [p for p in wanted if p not in self._rules]
        if missing:
            raise ValueError(f"not in the catalog: {', '.join(missing[:5])}")
        out = PointCatalog.__new__(PointCatalog)
        out._rules = {p: self._rules[p] for p in wanted}
        return out
