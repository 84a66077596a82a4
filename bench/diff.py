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
            raise ValueError(f"{run} is a folder: name the benchmark with --benchmark")
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


def diff_runs(run_a: str | Path, run_b: str | Path, benchmark: str | None = None) -> dict[str, Any]:
    samples_a, results_a = _paths(Path(run_a), benchmark)
    samples_b, results_b = _paths(Path(run_b), benchmark)
    _, a = read_samples(samples_a)
    _, b = read_samples(samples_b)
    changed = sorted(k for k in set(a) & set(b) if a[k]["sha256"] != b[k]["sha256"])
    out = {"samples_a": len(a), "samples_b": len(b), "changed": [json.loads(k) for k in changed],
           "only_in_a": [json.loads(k) for k in sorted(set(a) - set(b))],
           "only_in_b": [json.loads(k) for k in sorted(set(b) - set(a))], "metric_deltas": {}}
    if results_a and results_b and results_a.is_file() and results_b.is_file():
        ma, mb = flatten(read_json(results_a)["metrics"]), flatten(read_json(results_b)["metrics"])
        out["metric_deltas"] = {k: (ma[k], mb[k], mb[k] - ma[k]) for k in sorted(set(ma) & set(mb))
                                if ma[k] != mb[k]}
    return out


def format_diff(diff: dict[str, Any], limit: int = 20) -> str:
    lines = [f"samples: {diff['samples_a']} in A, {diff['samples_b']} in B; {len(diff['changed'])} changed, "
             f"{len(diff['only_in_a'])} only in A, {len(diff['only_in_b'])} only in B"]
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
