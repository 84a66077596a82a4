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
    staging: Path | None = None  # where this run's files go until published (bench/publish.py); None: out_dir
    stage_failures: list[dict[str, str]] = field(default_factory=list)  # filled by run_stage
    sample_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # export -> cached / computed

    @property
    def write_dir(self) -> Path:
        return self.staging if self.staging is not None else self.out_dir

    def samples_path(self, benchmark: str) -> Path:
        """Where a benchmark exports its per-sample outputs (<reports>/samples/<benchmark>.jsonl once published)."""
        return self.write_dir / "samples" / f"{benchmark}.jsonl"

    @property
    def figures_dir(self) -> Path:
        """Where a benchmark saves its figures (<reports>/figures/ once published; reports cite figures/NAME)."""
        path = self.write_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_stage(self, name: str, fn: Callable[..., Any], *args: Any, required: bool = True, **kwargs: Any) -> Any:
        """Run one stage of a benchmark, isolated: its exception is recorded (stage, error, traceback
        tail) instead of losing what the other stages computed, and None is returned. The harness adds
        the failures to the result; a failed `required` stage makes the run a failed one (kept beside
        the published results), an optional one is reported as data (e.g. a known-bad replica that crashes)."""
        import traceback

        try:
            return fn(*args, **kwargs)
        except Exception as err:  # the point: keep going
            self.stage_failures.append({"stage": name, "error": f"{type(err).__name__}: {err}", "required": required,
                                        "traceback": "".join(traceback.format_exc().splitlines(True)[-12:])})
            print(f"[vsbench] stage {name!r} failed: {type(err).__name__}: {err}", flush=True)
            return None


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
