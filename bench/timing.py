"""Side-by-side timing that survives a shared machine (docs/design.md §10).

Every speed ratio the reports print comes from `compare`: the methods run the SAME work, interleaved
(A B, then B A, ...: the order alternates each round so that load drift and call order hit every side
alike), each repeated `repeats` times after `warmup` untimed calls; wall time AND process CPU time of
each call are kept. A ratio is reported as the median of the per-round ratios (each round's two
calls are neighbours in time, so a change in load lands on both), with its min and max; a ratio whose
per-round values spread by more than `max_spread` (relative) is flagged unsteady, and the report
prints it as such instead of as a headline. The machine's load average is recorded at start and end.

CUDA work is synchronised before and after each timed call.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

DEFAULT_MAX_SPREAD = 0.25  # (max - min) / median of a ratio's per-round values above which it is flagged


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclass
class Timings:
    """Per-method wall and CPU seconds of each timed call, in call order (one entry per round)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    rounds: int
    load_start: list[float] | None
    load_end: list[float] | None
    max_spread: float = DEFAULT_MAX_SPREAD
    results: dict[str, Any] = field(default_factory=dict)  # each method's output of its last call

    def summary(self, method: str) -> dict[str, float]:
        """min / median wall and CPU seconds of one method."""
        w, c = self.wall[method], self.cpu[method]
        return {"wall_min_s": min(w), "wall_median_s": statistics.median(w),
                "cpu_min_s": min(c), "cpu_median_s": statistics.median(c), "repeats": len(w)}

    def ratio(self, slow: str, fast: str, clock: str = "wall") -> "Ratio":
        """How many times faster `fast` is than `slow`, from the per-round ratios on `clock`."""
        a, b = (self.wall if clock == "wall" else self.cpu)[slow], (self.wall if clock == "wall" else self.cpu)[fast]
        per_round = [x / y for x, y in zip(a, b) if y > 0]
        return Ratio(per_round, self.max_spread)

    def load_text(self) -> str:
        """'0.52 -> 1.10': the 1-minute load average at the start and the end, for a report cell."""
        fmt = lambda load: "n/a" if load is None else f"{load[0]:.2f}"  # noqa: E731
        return f"{fmt(self.load_start)} -> {fmt(self.load_end)}"

    def record(self) -> dict[str, Any]:
        """JSON-able record: per-method summaries, the raw samples and the load."""
        return {"methods": {m: self.summary(m) for m in self.wall}, "wall_s": self.wall, "cpu_s": self.cpu,
                "rounds": self.rounds, "load_average_start": self.load_start, "load_average_end": self.load_end,
                "max_spread": self.max_spread}


@dataclass
class Ratio:
    per_round: list[float]
    max_spread: float = DEFAULT_MAX_SPREAD

    @property
    def median(self) -> float:
        return statistics.median(self.per_round) if self.per_round else float("nan")

    @property
    def low(self) -> float:
        return min(self.per_round) if self.per_round else float("nan")

    @property
    def high(self) -> float:
        return max(self.per_round) if self.per_round else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-round ratios."""
        return (self.high - self.low) / self.median if self.per_round and self.median > 0 else float("inf")

    @property
    def steady(self) -> bool:
        return len(self.per_round) >= 2 and self.spread <= self.max_spread

    def text(self, digits: int = 3) -> str:
        """'12.3x (11.9-12.8)', or '... UNSTEADY' when the rounds disagree by more than max_spread."""
        if not self.per_round:
            return "n/a"
        body = f"{_sig(self.median, digits)}x ({_sig(self.low, digits)}-{_sig(self.high, digits)})"
        return body if self.steady else f"{body} UNSTEADY (spread {self.spread:.0%} > {self.max_spread:.0%})"

    def record(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "spread": self.spread,
                "steady": self.steady, "per_round": self.per_round}


def _sig(value: float, digits: int) -> str:
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _sync(device) -> None:
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def compare(methods: Mapping[str, Callable[[], Any]], *, repeats: int = 5, warmup: int = 1, device=None,
            max_spread: float = DEFAULT_MAX_SPREAD) -> Timings:
    """Time each zero-argument callable `repeats` times, interleaved, alternating the order each round.

    Every callable must do the same work each call (the caller makes the sides comparable: same steps,
    same inputs). Returns the per-call wall and CPU seconds and the last output of each method."""
    if not methods:
        raise ValueError("compare: no methods to time")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"compare: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    names = list(methods)
    load_start = load_average()
    results: dict[str, Any] = {}
    for _ in range(warmup):
        for name in names:
            results[name] = methods[name]()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = methods[name]()
            _sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return Timings(wall, cpu, repeats, load_start, load_average(), max_spread, results)
