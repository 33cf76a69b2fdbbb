"""When each session's next frame is due, learned from when its frames arrived: the render thread's
coalescing window (bridge.render_thread) waits only for partners whose next frame is about to come.

A session's period is the median of the gaps between its last GAPS arrivals: a game ticking at a fixed rate
has gaps of one period with a little jitter, and the median ignores the odd missed tick (a gap of two
periods) or pause without being dragged by it, yet follows a real change of rate within a few frames. Its
next frame is due one period after its last one. Until it has MIN_GAPS gaps nothing is due: a new or
irregular client is never waited for on a guess.

Not locked: the render thread calls it under its own condition's lock.
"""
from __future__ import annotations

from collections import deque
from statistics import median

GAPS = 8  # gaps remembered per session (about 0.13 s at 60 frames/s)
MIN_GAPS = 2  # gaps seen before a session's next frame is predicted at all


class Arrivals:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}  # session -> perf_counter of its last frame's arrival
        self._gaps: dict[str, deque] = {}  # session -> its last GAPS gaps, seconds

    def arrived(self, session: str, t: float) -> None:
        last = self._last.get(session)
        if last is not None and t > last:
            self._gaps.setdefault(session, deque(maxlen=GAPS)).append(t - last)
        self._last[session] = t

    def due(self, session: str) -> float | None:
        """perf_counter at which the session's next frame should arrive; None: not known."""
        gaps = self._gaps.get(session)
        if gaps is None or len(gaps) < MIN_GAPS:
            return None
        return self._last[session] + median(gaps)

    def forget(self, session: str) -> None:
        self._last.pop(session, None)
        self._gaps.pop(session, None)
