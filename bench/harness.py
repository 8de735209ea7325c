"""A small timing harness: bounded repetitions, medians, and ratios against a named baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    p95_ms: float
    runs: int


def measure(
    name: str,
    call: Callable[[], object],
    *,
    runs: int = 200,
    warmup: int = 10,
    budget_s: float = 20.0,
) -> Timing:
    """Time `call` up to `runs` times (after `warmup`), stopping early when `budget_s` is spent."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < runs and time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return Timing(name=name, median_ms=statistics.median(samples), p95_ms=p95, runs=len(samples))


def report(title: str, timings: list[Timing], baseline: str) -> None:
    """Print the timings with each one's ratio to the baseline's median."""
    base = next(t for t in timings if t.name == baseline).median_ms
    print(f"\n## {title}  (ratios against '{baseline}')")
    print(f"{'measurement':<46} {'median ms':>10} {'p95 ms':>9} {'runs':>5} {'ratio':>7}")
    for timing in timings:
        ratio = timing.median_ms / base if base else float("nan")
        print(
            f"{timing.name:<46} {timing.median_ms:>10.3f} {timing.p95_ms:>9.3f} "
            f"{timing.runs:>5} {ratio:>6.2f}x"
        )
