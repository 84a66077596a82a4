"""`vsbench diff RUN_A RUN_B`: which samples changed between two runs, and the metric deltas.

A run is a per-sample export (`samples/<benchmark>.jsonl`) or a reports folder (then --benchmark
names which export and which results JSON to compare).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.samples import read_samples
from bench.storage import read_json


def _results_of(folder: Path, export: str) -> Path | None:
    """The results JSON of an export: <export>.json, else that of the benchmark that wrote it
    (multitask-pix2seqv2_tiny -> multitask, captioning-beam -> captioning)."""
    for name in (export, export.split("-")[0]):
        if (folder / "results" / f"{name}.json").is_file():
            return folder / "results" / f"{name}.json"
    return None


def _paths(run: Path, benchmark: str | None) -> tuple[Path, Path | None]:
    if run.is_dir():
        if not benchmark:
            exports = sorted(p.stem for p in (run / "samples").glob("*.jsonl"))
            raise ValueError(f"{run} is a reports folder: name the export with --benchmark "
                             f"(there: {', '.join(exports) or 'none'})")
        return run / "samples" / f"{benchmark}.jsonl", _results_of(run, benchmark)
    return run, _results_of(run.parent.parent, run.stem)


def flatten(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict, keyed by dotted path."""
    flat = {}
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            flat.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        flat[prefix[:-1]] = float(metrics)
    return flat


def float_distance(a: Any, b: Any) -> float | None:
    """Largest |float difference| between two JSON values of the same structure whose non-float parts
    (ints, strings, keys, lengths) are equal; None when they differ in anything but floats."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        parts = [float_distance(a[k], b[k]) for k in a]
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return None
        parts = [float_distance(x, y) for x, y in zip(a, b)]
    elif isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float)) for v in (a, b)):
            return None
        return abs(float(a) - float(b))
    else:
        return 0.0 if a == b else None
    if any(p is None for p in parts):
        return None
    return max(parts, default=0.0)


def default_atol(header: dict[str, Any]) -> float:
    """One unit of the export's float rounding (two values within a hair of a rounding boundary round one
    unit apart), else 1e-6 for exports written before rounding."""
    decimals = header.get("float_decimals")
    return 10.0 ** -int(decimals) * (1 + 1e-9) if isinstance(decimals, int) else 1e-6


def diff_runs(run_a: str | Path, run_b: str | Path, benchmark: str | None = None,
              atol: float | None = None) -> dict[str, Any]:
    """Sample-by-sample comparison: identical samples, samples equal but for floats within `atol`,
    changed samples, and samples in one run only; plus the metric deltas of the two results."""
    samples_a, results_a = _paths(Path(run_a), benchmark)
    samples_b, results_b = _paths(Path(run_b), benchmark)
    header_a, a = read_samples(samples_a)
    _, b = read_samples(samples_b)
    if atol is None:
        atol = default_atol(header_a)
    if not atol >= 0:
        raise ValueError(f"--atol must be >= 0, got {atol}")
    identical, within, changed, worst = [], [], [], 0.0
    for k in sorted(set(a) & set(b)):
        if a[k]["sha256"] == b[k]["sha256"]:
            identical.append(k)
            continue
        distance = float_distance(a[k]["output"], b[k]["output"])
        if distance is not None and distance <= atol:
            within.append(k)
            worst = max(worst, distance)
        else:
            changed.append(k)
    out = {"samples_a": len(a), "samples_b": len(b), "identical": len(identical), "atol": atol,
           "within_tolerance": [json.loads(k) for k in within], "max_float_diff": worst,
           "changed": [json.loads(k) for k in changed],
           "only_in_a": [json.loads(k) for k in sorted(set(a) - set(b))],
           "only_in_b": [json.loads(k) for k in sorted(set(b) - set(a))], "metric_deltas": {}}
    if results_a and results_b and results_a.is_file() and results_b.is_file():
        ma, mb = flatten(read_json(results_a)["metrics"]), flatten(read_json(results_b)["metrics"])
        out["metric_deltas"] = {k: (ma[k], mb[k], mb[k] - ma[k]) for k in sorted(set(ma) & set(mb))
                                if ma[k] != mb[k]}
    return out


def format_diff(diff: dict[str, Any], limit: int = 20) -> str:
    common = diff["identical"] + len(diff["within_tolerance"]) + len(diff["changed"])
    lines = [f"samples: {diff['samples_a']} in A, {diff['samples_b']} in B, {common} in both"]
    if common and not diff["changed"]:
        lines.append(f"outputs equal: {diff['identical']} identical"
                     + (f", {len(diff['within_tolerance'])} equal but for floats within {diff['atol']:.0e} "
                        f"(max |diff| {diff['max_float_diff']:.1e}): tokens, labels and structure equal"
                        if diff["within_tolerance"] else ""))
    elif common:
        lines.append(f"{len(diff['changed'])} changed, {diff['identical']} identical, "
                     f"{len(diff['within_tolerance'])} equal but for floats within {diff['atol']:.0e}")
    for name in ("changed", "only_in_a", "only_in_b"):
        if diff[name]:
            shown = ", ".join(map(str, diff[name][:limit]))
            lines.append(f"{name}: {shown}{' ...' if len(diff[name]) > limit else ''}")
    if diff["metric_deltas"]:
        rows = [[k, a, b, d] for k, (a, b, d) in diff["metric_deltas"].items()]
        lines.append(tabulate(rows, headers=["metric", "A", "B", "B - A"], floatfmt=".6f"))
    else:
        lines.append("metrics: identical (or no results JSON beside the exports)")
    return "\n".join(lines)
