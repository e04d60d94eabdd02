"""Progress of a run for the footer: the bar's fraction and a status line with a time estimate.

The status reads like ``object 2 of 4 · 32 of ~45 slices · about 3 s left``. The slice estimate
is the slices written so far over the engine's progress fraction; the time left is this object's
rate extrapolated, plus the mean time of the finished objects for each object still to come.
Bookkeeping only (main thread); the clock is injectable for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Below this engine progress the slice and time estimates are too noisy to show.
MIN_ESTIMATE_PROGRESS = 0.05


def format_seconds(seconds: float) -> str:
    """``"about 3 s left"`` style duration text: ``"<1 s"``, ``"12 s"``, ``"3 min"``."""
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


class RunProgress:
    """Progress of a run over ``total`` objects.

    Args:
        total: Number of objects in the run.
        clock: Seconds, monotonic (default :func:`time.monotonic`).
    """

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(1, int(total))
        self._clock = clock
        self._start = clock()
        self._object_start = self._start
        self._durations: list[float] = []
        self.position = 0

    def object_started(self, position: int) -> None:
        """Object ``position`` (0-based) starts now."""
        self.position = int(position)
        self._object_start = self._clock()

    def object_finished(self) -> None:
        """The current object is done."""
        self._durations.append(self._clock() - self._object_start)

    def fraction(self, progress: float) -> float:
        """The whole run's fraction done, given the current object's ``progress`` (0..1)."""
        return min(1.0, (self.position + min(max(progress, 0.0), 1.0)) / self.total)

    def seconds_left(self, progress: float) -> float | None:
        """Estimated seconds until the run ends (None: too early to say)."""
        elapsed = self._clock() - self._object_start
        if progress < MIN_ESTIMATE_PROGRESS:
            if not self._durations:
                return None
            this_left = max(0.0, sum(self._durations) / len(self._durations) - elapsed)
        else:
            this_left = elapsed / progress * (1.0 - min(progress, 1.0))
        per_object = (
            sum(self._durations) / len(self._durations)
            if self._durations
            else elapsed / max(progress, MIN_ESTIMATE_PROGRESS)
        )
        return this_left + per_object * (self.total - self.position - 1)

    def text(self, progress: float, slices: int, prefix: str = "") -> str:
        """Status line for the current object after an update.

        Args:
            progress: The object's engine progress, 0..1.
            slices: Slices of the object written so far.
            prefix: Optional phase or object name shown first.
        """
        parts = [f"object {self.position + 1} of {self.total}"]
        if prefix:
            parts[0] += f" ({prefix})"
        if progress >= MIN_ESTIMATE_PROGRESS and progress < 1.0:
            parts.append(f"{slices} of ~{max(slices, round(slices / progress))} slices")
        else:
            parts.append(f"{slices} slices")
        left = self.seconds_left(progress)
        if left is not None:
            parts.append(f"about {format_seconds(left)} left")
        return " · ".join(parts)
