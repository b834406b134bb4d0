"""The one timer every benchmark uses: the median wall time of repeated calls."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Call ``fn`` ``repeat`` times; return (median seconds, the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
