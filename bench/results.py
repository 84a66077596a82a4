"""The results schema: what every benchmark run records, written down as typed structures.

A `BenchmarkResult` holds the metrics, the config and its hash, the seeds, the environment
(package versions, device, git commit) and the renderable sections of the markdown report, so that
`vsbench report` can re-render every report from the JSON results without running anything.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.storage import read_json, stable_hash, to_jsonable, write_json

SCHEMA_VERSION = 1
TRACKED_PACKAGES = (
    "torch", "numpy", "pandas", "pycocotools", "opencv-python-headless", "scikit-image",
    "transformers", "pycocoevalcap", "faster-coco-eval", "hypothesis", "tabulate",
)


@dataclass
class Table:
    """A table for the report: `rows` are lists aligned with `headers`; None / NaN render as n/a.

    `kinds` (one per column, optional) says how the report writer renders a number (bench/report.py,
    `format_number`): "metric" (fixed `floatfmt` decimals), "seconds" / "ms" (a time, shown in s or ms
    with 3 significant digits), "ratio" (3 significant digits and "x"), "count" (an integer),
    "percent" (one decimal and "%"), "rate" (3 significant digits, never scientific), "diff" (a small
    difference: scientific notation allowed), "text". Columns without a kind are "metric"."""

    headers: list[str]
    rows: list[list[Any]]
    title: str = ""
    note: str = ""
    floatfmt: str = ".4f"
    kinds: list[str] | None = None


@dataclass
class Figure:
    """A figure stored under the reports folder; `path` is relative to it (e.g. figures/x.png)."""

    path: str
    caption: str


@dataclass
class Section:
    heading: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Environment:
    python: str
    platform: str
    packages: dict[str, str]
    device: str
    git_commit: str
    git_dirty: bool
    cpu_count: int
    timestamp: str


@dataclass
class BenchmarkResult:
    benchmark: str
    report: str  # markdown file stem under reports/, several benchmarks may share one
    title: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    seeds: dict[str, int]
    sections: list[Section]
    environment: Environment | None = None
    command: str = ""
    wall_time_s: float = 0.0
    config_hash: str = ""
    ok: bool = True  # False: the benchmark ran but its checks did not hold; `vsbench run` exits non-zero
    problems: list[str] = field(default_factory=list)  # which checks did not hold (printed when ok is False)
    artifacts: dict[str, str] = field(default_factory=dict)  # files of this run under the reports folder -> sha256
    sample_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # export -> {"cached": n, "computed": m}
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.config_hash:
            self.config_hash = stable_hash(self.config)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkResult":
        """The inverse of to_dict; ValueError naming unknown or missing fields (a results file of another
        schema or edited by hand)."""
        if not isinstance(data, dict):
            raise ValueError(f"a results file holds a JSON object, not a {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        missing = sorted(f for f in ("benchmark", "report", "title", "metrics", "config", "seeds", "sections")
                         if f not in data)
        if unknown or missing:
            raise ValueError("not a vsbench results file of schema "
                             f"{SCHEMA_VERSION}: " + "; ".join(p for p in (
                                 f"unknown fields {unknown}" if unknown else "",
                                 f"missing fields {missing}" if missing else "") if p))
        data = dict(data)
        data["sections"] = [
            Section(
                heading=s["heading"], text=s.get("text", ""),
                tables=[Table(**t) for t in s.get("tables", [])],
                figures=[Figure(**f) for f in s.get("figures", [])],
            )
            for s in data.get("sections", [])
        ]
        env = data.get("environment")
        data["environment"] = Environment(**env) if env else None
        return cls(**data)


def git_state(root: str | os.PathLike | None = None) -> tuple[str, bool]:
    """(commit hash, dirty flag) of the checkout holding `root`; ('unknown', False) outside git.

    Dirty means tracked code or data differ from the commit; reports/ is left out, since a run rewrites it."""
    root = Path(root or Path(__file__).resolve().parent.parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)reports"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def capture_environment(device: str) -> Environment:
    commit, dirty = git_state()
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        packages=package_versions(),
        device=device,
        git_commit=commit,
        git_dirty=dirty,
        cpu_count=os.cpu_count() or 0,
        timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def results_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "results"


def save_result(result: BenchmarkResult, out_dir: str | os.PathLike) -> Path:
    return write_json(results_dir(out_dir) / f"{result.benchmark}.json", result.to_dict())


def load_results(out_dir: str | os.PathLike, skipped: list[str] | None = None) -> list[BenchmarkResult]:
    """Every stored result under out_dir/results, sorted by benchmark name. A file that cannot be read
    (malformed JSON, another schema) is left out with a warning naming it, so one bad file never stops
    the other reports; `skipped`, when given, receives those messages."""
    import sys

    folder = results_dir(out_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(BenchmarkResult.from_dict(read_json(path)))
        except (OSError, ValueError, TypeError, KeyError) as err:
            message = f"{path}: skipped, not a readable results file ({err})"
            print(f"[vsbench] warning: {message}", file=sys.stderr, flush=True)
            if skipped is not None:
                skipped.append(message)
    return found
