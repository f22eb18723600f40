"""Where a sweep stands: units done, running, failed and waiting, and when it should end."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field


def clock_text(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour).

    Example:
        >>> clock_text(75.4), clock_text(3725)
        ('1:15', '1:02:05')
    """
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class SweepProgress:
    """Counts of a sweep's units and an estimate of the time left.

    The estimate: every unit not yet finished takes the mean time of those finished in this
    sweep (a running one: less what it has already spent), as many at once as ran at once so
    far, each starting as soon as one ends. Unknown (``None``) until a unit has finished.

    Attributes:
        total: units of the sweep, reused ones included.
        reused: units already done before the sweep (counted as done).
        done, failed, running: units finished, failed for good, running now.
        durations: seconds of every unit finished in this sweep.

    Example:
        >>> progress = SweepProgress(total=4, reused=1, started=0.0)
        >>> progress.start("a", now=0.0); progress.start("b", now=0.0)
        >>> progress.finish("a", 10.0, ok=True)
        >>> progress.text(now=10.0)
        '2/4 done (1 reused), 1 running, 0 failed, 1 waiting, ETA 0:10'
    """

    total: int
    reused: int = 0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)
    running_since: dict[str, float] = field(default_factory=dict)
    most_at_once: int = 0

    def __post_init__(self) -> None:
        self.done = max(self.done, self.reused)

    @property
    def running(self) -> int:
        return len(self.running_since)

    @property
    def waiting(self) -> int:
        return max(0, self.total - self.done - self.failed - self.running)

    def start(self, key: str, now: float | None = None) -> None:
        """Unit ``key`` started (again, for a retry)."""
        self.running_since[key] = time.monotonic() if now is None else now
        self.most_at_once = max(self.most_at_once, self.running)

    def stop(self, key: str) -> None:
        """Unit ``key`` is no longer running (its attempt ended; it may be retried)."""
        self.running_since.pop(key, None)

    def finish(self, key: str, seconds: float, *, ok: bool) -> None:
        """Unit ``key`` finished for good: done (its ``seconds`` count for the estimate) or
        failed."""
        self.stop(key)
        if ok:
            self.done += 1
            self.durations.append(seconds)
        else:
            self.failed += 1

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds until every unit has finished, or ``None`` before any has."""
        if not self.durations:
            return None
        now = time.monotonic() if now is None else now
        mean = sum(self.durations) / len(self.durations)
        slots = [max(0.0, mean - (now - since)) for since in self.running_since.values()]
        slots += [0.0] * max(0, max(1, self.most_at_once) - len(slots))
        heapq.heapify(slots)
        for _ in range(self.waiting):
            heapq.heappush(slots, heapq.heappop(slots) + mean)
        return max(slots)

    def text(self, now: float | None = None) -> str:
        """``"3/8 done (1 reused), 2 running, 0 failed, 3 waiting, ETA 0:41"``."""
        eta = self.eta_s(now)
        reused = f" ({self.reused} reused)" if self.reused else ""
        return (f"{self.done}/{self.total} done{reused}, {self.running} running, "
                f"{self.failed} failed, {self.waiting} waiting, "
                f"ETA {'?' if eta is None else clock_text(eta)}")
