"""Benchmarks registered by name (pix2seq-style): registering a name twice is an error and a failed
lookup lists the valid names. Benchmark modules live in `bench.benchmarks` and are discovered on import.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.results import BenchmarkResult


@dataclass
class RunContext:
    """What a benchmark gets: where to write, which device, seed, and the extra implementations."""

    out_dir: Path  # the reports folder; figures go to out_dir / "figures"
    device: torch.device
    seed: int = 0
    impls: list[str] = field(default_factory=list)  # extra --impl specs (MODULE:OBJECT)
    quick: bool = False  # smaller sizes, for smoke tests of the harness itself
    command: str = ""
    store: Any = None  # bench.samples.SampleStore or None: per-sample cache for resumable runs
    limit: int | None = None  # evaluate only the first N samples
    strict: bool = False  # --strict: evaluation refuses suspicious input instead of warning

    def samples_path(self, benchmark: str) -> Path:
        """Where a benchmark exports its per-sample outputs (reports/samples/<benchmark>.jsonl)."""
        return self.out_dir / "samples" / f"{benchmark}.jsonl"

    @property
    def figures_dir(self) -> Path:
        path = self.out_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    report: str  # markdown stem: reports/<report>.md
    order: int  # position of this benchmark's sections within its report
    run: Callable[[RunContext], BenchmarkResult]
    distributed: bool = False  # shards its samples over torchrun ranks (else runs on rank 0 only)


_BENCHMARKS: dict[str, Benchmark] = {}
REPORT_TITLES: dict[str, str] = {}


def register_benchmark(name: str, *, description: str, report: str | None = None, order: int = 0,
                       report_title: str | None = None, distributed: bool = False):
    """Decorator: register `fn(ctx) -> BenchmarkResult` under `name`."""

    def decorator(fn: Callable[[RunContext], BenchmarkResult]):
        if name in _BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is already registered (by {_BENCHMARKS[name].run.__module__})")
        stem = report or name
        _BENCHMARKS[name] = Benchmark(name, description, stem, order, fn, distributed)
        if report_title:
            REPORT_TITLES.setdefault(stem, report_title)
        return fn

    return decorator


def unregister_benchmark(name: str) -> None:
    _BENCHMARKS.pop(name, None)


def discover() -> None:
    """Import every module of bench.benchmarks so that their @register_benchmark calls run."""
    package = importlib.import_module("bench.benchmarks")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        importlib.import_module(f"bench.benchmarks.{info.name}")


def all_benchmarks() -> list[Benchmark]:
    discover()
    return sorted(_BENCHMARKS.values(), key=lambda b: (b.report, b.order, b.name))


def get_benchmark(name: str) -> Benchmark:
    discover()
    if name not in _BENCHMARKS:
        valid = ", ".join(sorted(_BENCHMARKS)) or "(none)"
        raise KeyError(f"unknown benchmark {name!r}; valid names: {valid}")
    return _BENCHMARKS[name]


@dataclass(frozen=True)
class Command:
    """An extra `vsbench` sub-command (train, diff, ...) registered by a benchmark module."""

    name: str
    help: str
    configure: Callable  # configure(argparse.ArgumentParser) -> None
    handler: Callable  # handler(argparse.Namespace) -> int


_COMMANDS: dict[str, Command] = {}


def register_command(name: str, *, help: str, configure: Callable):
    def decorator(handler: Callable):
        if name in _COMMANDS:
            raise ValueError(f"command {name!r} is already registered")
        _COMMANDS[name] = Command(name, help, configure, handler)
        return handler

    return decorator


def all_commands() -> list[Command]:
    discover()
    return sorted(_COMMANDS.values(), key=lambda c: c.name)
