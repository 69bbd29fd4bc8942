"""How far ahead a sensor's ``ts`` may be: the publisher's declared time base.

A publisher says in its retained birth message (:class:`connectors.payloads.BirthMessage`)
which clock its readings follow. :class:`TimeBase` turns that into a *horizon*, the newest
``ts`` a reading may carry now; ingestion refuses anything beyond it (``future_ts``), so one
message stamped 1e12 can neither freeze the historian's ``latest`` row nor move a plant clock
derived from the data.

- No birth yet, or ``clock`` "wall": the horizon is the wall clock plus ``tolerance_s``
  (clock skew between machines).
- "plant" at ``speed``: the plant time the publisher declared at birth, advanced by the wall
  time since at ``speed``, plus ``tolerance_s`` of wall time at that speed and one
  ``max_step_s`` (a reading is stamped at the end of its plant step).
- "plant" stepped by its driver (``speed`` null): ``max_step_s`` past the newer of the birth's
  ``ts`` and the caller's robust estimate of the plant clock (the median over the points, so
  one bad sample cannot raise it).

Older ``ts`` are not refused: they cannot move ``latest`` (it keeps the newest) nor a median.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from connectors.payloads import BirthMessage

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_S = 30.0
"""Wall seconds a reading may be ahead of its publisher's declared clock."""
DEFAULT_MAX_STEP_S = 3600.0
"""Plant seconds a stepped publisher's reading may be ahead of the plant clock."""


class TimeBase:
    """The current birth of one publisher and the ``ts`` horizon it implies."""

    def __init__(
        self,
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_step_s: float = DEFAULT_MAX_STEP_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not (tolerance_s >= 0 and max_step_s > 0):
            raise ValueError("tolerance_s must be >= 0 and max_step_s positive")
        self.tolerance_s = float(tolerance_s)
        self.max_step_s = float(max_step_s)
        self._wall = wall
        self.birth: BirthMessage | None = None

    def set_birth(self, birth: BirthMessage) -> bool:
        """Adopt ``birth``; True when it starts a new session (sequences reset)."""
        new_session = self.birth is None or birth.session != self.birth.session
        if new_session:
            logger.info(
                "publisher birth: session %d, %s clock%s",
                birth.session,
                birth.clock,
                "" if birth.speed is None else f" at x{birth.speed:g}",
            )
        self.birth = birth
        return new_session

    @property
    def stepped(self) -> bool:
        """Whether the horizon depends on the plant clock estimate (not on wall time)."""
        b = self.birth
        return b is not None and b.clock == "plant" and b.speed is None

    def horizon(self, plant_estimate: float = -math.inf) -> float:
        """The newest acceptable ``ts`` now (module docstring)."""
        now = self._wall()
        b = self.birth
        if b is None or b.clock == "wall":
            return now + self.tolerance_s
        if b.speed is None:
            return max(b.ts, plant_estimate) + self.max_step_s
        elapsed = max(0.0, now - b.wall_ts)
        return b.ts + (elapsed + self.tolerance_s) * b.speed + self.max_step_s
