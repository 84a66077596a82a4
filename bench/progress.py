"""Progress for every loop over samples, steps or suites: a tqdm bar on a terminal; one summary line
per stage when stderr is not a terminal or under CI (or with VSBENCH_PROGRESS=0), so logs stay short.

    for batch in progress(batches, desc="detection: generate", unit="batch"):
        ...
    with Progress(total=steps, desc="train detection", unit="step") as bar:
        bar.update(1, loss=f"{loss:.3f}")
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def bars_enabled() -> bool:
    """True when a live bar helps: stderr is a terminal, not CI, and VSBENCH_PROGRESS is not 0."""
    if os.environ.get("VSBENCH_PROGRESS", "").strip() in ("0", "false", "no"):
        return False
    if os.environ.get("VSBENCH_PROGRESS", "").strip() in ("1", "true", "yes"):
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) and not os.environ.get("CI")


class Progress:
    """A bar (tqdm) or, without one, a single summary line when the stage ends:
    `[vsbench] <desc>: <n> <unit>s in <t> s (<rate>/s)`."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", quiet: bool = False) -> None:
        self.total, self.desc, self.unit, self.quiet = total, desc, unit, quiet
        self.count, self.start, self.postfix = 0, time.perf_counter(), ""
        self.bar = None
        if bars_enabled() and not quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: object) -> None:
        self.count += n
        if postfix:
            self.postfix = ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix_str(self.postfix, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.quiet:
            return
        of = f" of {self.total}" if self.total is not None and self.total != self.count else ""
        rate = f", {self.count / seconds:.3g} {self.unit}/s" if seconds > 0 and self.count else ""
        extra = f"; {self.postfix}" if self.postfix else ""
        print(f"[vsbench] {self.desc}: {self.count}{of} {self.unit}{'s' if self.count != 1 else ''} "
              f"in {seconds:.1f} s{rate}{extra}", file=sys.stderr, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None,
             quiet: bool = False) -> Iterator[T]:
    """Iterate `iterable` with a Progress (total from len() when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total=total, desc=desc, unit=unit, quiet=quiet) as bar:
        for item in iterable:
            yield item
            bar.update(1)
