"""Fault scenarios run against real `vsbench` subprocesses: a run killed by a signal mid-way and
resumed, and a torchrun multi-process run, each compared with an uninterrupted single-process run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.plugins import repo_root


def run_vsbench(args: list[str], env_extra: dict[str, str] | None = None, launcher: list[str] | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable, "-m", "bench"]) + args
    return subprocess.run(cmd, cwd=repo_root() or os.getcwd(), env=env, capture_output=True, text=True, timeout=timeout)


def half_written(folder: Path) -> list[str]:
    """Temporary files left behind, and JSON results that do not parse."""
    bad = [str(p.relative_to(folder)) for p in folder.rglob("*.tmp")]
    for path in folder.rglob("results/*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            bad.append(str(path.relative_to(folder)))
    return bad


def metrics_of(folder: Path, benchmark: str) -> dict[str, Any] | None:
    path = folder / "results" / f"{benchmark}.json"
    return json.loads(path.read_text())["metrics"] if path.is_file() else None


def samples_of(folder: Path, benchmark: str) -> list[dict[str, Any]]:
    path = folder / "samples" / f"{benchmark}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[1:]] if path.is_file() else []


def outputs_match(a: Any, b: Any, atol: float = 1e-3) -> bool:
    """Same structure, same integers and strings, floats within `atol` (a batch of another size may change
    a float32 probability in its last bits; token ids must not change)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(outputs_match(a[k], b[k], atol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(outputs_match(x, y, atol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= atol
    return a == b


def samples_match(folder_a: Path, folder_b: Path, benchmark: str) -> bool:
    a, b = samples_of(folder_a, benchmark), samples_of(folder_b, benchmark)
    return bool(a) and [r["sample_id"] for r in a] == [r["sample_id"] for r in b] and \
        all(outputs_match(x["output"], y["output"]) for x, y in zip(a, b))


def _cache_counts(stdout: str) -> tuple[int, int]:
    found = re.search(r"(\d+) samples from the cache, (\d+) generated", stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (-1, -1)


def interrupted_run(workdir: Path, benchmark: str = "detection", limit: int = 48, kill_after: int = 1,
                    env: dict[str, str] | None = None) -> dict[str, Any]:
    """Uninterrupted run vs a run SIGKILLed after `kill_after` stored batches and then resumed."""
    env = env or {}
    base = ["run", benchmark, "--device", "cpu", "--limit", str(limit)]
    full, cut = workdir / "uninterrupted", workdir / "interrupted"
    ref = run_vsbench(base + ["--out", str(full), "--cache", str(full / "cache.sqlite")], env)
    killed = run_vsbench(base + ["--out", str(cut), "--cache", str(cut / "cache.sqlite")],
                         {**env, "VSBENCH_KILL_AFTER_BATCHES": str(kill_after)})
    left_over = half_written(cut)
    report_after_kill = (cut / f"{benchmark}.md").exists()
    resumed = run_vsbench(base + ["--out", str(cut), "--cache", str(cut / "cache.sqlite")], env)
    cached, computed = _cache_counts(resumed.stdout)
    return {"uninterrupted_exit": ref.returncode, "killed_exit": killed.returncode, "resumed_exit": resumed.returncode,
            "half_written_after_kill": left_over, "report_written_before_kill": report_after_kill,
            "resumed_from_cache": cached, "resumed_computed": computed, "samples": limit,
            "metrics_equal": metrics_of(full, benchmark) is not None and metrics_of(full, benchmark) == metrics_of(cut, benchmark),
            "samples_equal": samples_of(full, benchmark) == samples_of(cut, benchmark) != [],  # same batches: exact
            "log_tail": (resumed.stdout + resumed.stderr)[-800:]}


def distributed_run(workdir: Path, nproc: int, benchmark: str = "detection", limit: int = 37,
                    env: dict[str, str] | None = None) -> dict[str, Any]:
    """`torchrun --nproc_per_node N -m bench run` (gloo) vs one process, both without the cache."""
    base = ["run", benchmark, "--device", "cpu", "--limit", str(limit), "--no-cache"]
    single, multi = workdir / "single", workdir / f"torchrun{nproc}"
    one = run_vsbench(base + ["--out", str(single)], env)
    many = run_vsbench(base + ["--out", str(multi)], env, launcher=[
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "bench"])
    return {"nproc": nproc, "samples": limit, "single_exit": one.returncode, "torchrun_exit": many.returncode,
            "metrics_equal": metrics_of(single, benchmark) is not None and metrics_of(single, benchmark) == metrics_of(multi, benchmark),
            "samples_match": samples_match(single, multi, benchmark),  # other batches: floats to 1e-5
            "log_tail": (many.stdout + many.stderr)[-800:]}
