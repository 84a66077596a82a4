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


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "bench"]


def failing_rank_run(workdir: Path, nproc: int = 2, fail_rank: int = 1, limit: int = 16,
                     env: dict[str, str] | None = None) -> dict[str, Any]:
    """torchrun where rank `fail_rank` raises in its first batch (VSBENCH_FAIL_RANK): every rank must exit
    non-zero within seconds, naming the failing rank and its error (not wait for gloo's 30 minutes)."""
    import time

    start = time.monotonic()
    proc = run_vsbench(["run", "detection", "--device", "cpu", "--limit", str(limit), "--no-cache",
                        "--out", str(workdir / "out")], {**(env or {}), "VSBENCH_FAIL_RANK": str(fail_rank)},
                       launcher=_torchrun(nproc), timeout=300)
    end = time.time()
    log = proc.stdout + proc.stderr
    failed_at = re.search(r"stopping every rank after: .*\(at unix time ([0-9.]+)\)", log)
    return {"nproc": nproc, "fail_rank": fail_rank, "exit": proc.returncode, "seconds": time.monotonic() - start,
            "seconds_after_failure": end - float(failed_at.group(1)) if failed_at else None,
            "names_failing_rank": f"rank {fail_rank}" in log and "injected failure" in log,
            "others_stopped_by_abort": "RankFailed" in log or "stops at" in log,
            "published": (workdir / "out" / "results" / "detection.json").is_file(),
            "log_tail": log[-1500:]}


def _copy_sources(target: Path) -> Path:
    """A copy of the importable sources (bench/, reference/, cases/), to edit without touching the checkout."""
    import shutil

    root = repo_root() or Path.cwd()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bench", "reference", "cases"):
        shutil.copytree(root / name, target / name, ignore=ignore)
    return target


def code_change_run(workdir: Path, limit: int = 16, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The same `vsbench run detection` three times on a copy of the sources: cold, warm (all cached), and
    after one line of the generation code is edited (every sample must be recomputed, none served stale)."""
    src = _copy_sources(workdir / "src")
    args = ["run", "detection", "--device", "cpu", "--limit", str(limit), "--out", str(workdir / "out"),
            "--cache", str(workdir / "cache.sqlite")]
    counts = []
    for step in ("cold", "warm", "edited"):
        if step == "edited":
            generate = src / "reference" / "pix2seq" / "generate.py"
            generate.write_text(generate.read_text() + "\n# edited by the code-change fault test\n")
        proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=src, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "VSBENCH_ROOT": str(src), **(env or {})},
                              timeout=900)
        counts.append((step, proc.returncode, *_cache_counts(proc.stdout)))
    return {"runs": counts, "samples": limit,
            "ok": [c[1:] for c in counts] == [(0, 0, limit), (0, limit, 0), (0, 0, limit)]}


def kill_during_publish_run(workdir: Path, limit: int = 16, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A good run, then a second run SIGKILLed between its PUBLISH marker and the renames
    (VSBENCH_KILL_DURING_PUBLISH), then `vsbench report`: the publication is rolled forward, and the
    published results and exports belong to one run (their sha256 match)."""
    from bench.publish import STAGING, verify_artifacts

    out = workdir / "out"
    base = ["run", "detection", "--device", "cpu", "--limit", str(limit), "--no-cache", "--out", str(out)]
    first = run_vsbench(base, env)
    killed = run_vsbench(base, {**(env or {}), "VSBENCH_KILL_DURING_PUBLISH": "1"})
    pending = [p.name for p in (out / STAGING).iterdir()] if (out / STAGING).is_dir() else []
    report = run_vsbench(["report", "--out", str(out)], env)
    results = json.loads((out / "results" / "detection.json").read_text())
    return {"first_exit": first.returncode, "killed_exit": killed.returncode, "staged_after_kill": len(pending),
            "report_exit": report.returncode, "rolled_forward": "completed the publication" in report.stderr,
            "artifact_problems": verify_artifacts(out, results.get("artifacts", {})),
            "staging_left": any((out / STAGING).iterdir()) if (out / STAGING).is_dir() else False}


HUNG_IMPL = '''
import time
from bench.implementations import Pix2SeqReference


class Hung(Pix2SeqReference):
    """The reference pipeline whose postprocess never returns."""
    name = "hung-postprocess"

    def postprocess(self, tokens, token_probs, sizes):
        while True:
            time.sleep(0.05)


HUNG = Hung()
'''


def hung_impl_run(workdir: Path, case_timeout: float = 5) -> dict[str, Any]:
    """`vsbench run cases --impl hung_impl:HUNG` (a part that never returns), on a small case selection
    beside the reference and one replica: the hung cases time out naming the part, the suite goes on,
    and every suite is reported."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "hung_impl.py").write_text(HUNG_IMPL)
    env = {"VSBENCH_IMPL_PATH": str(workdir), "VSBENCH_CASE_TIMEOUT": str(case_timeout),
           "VSBENCH_SUITE_TIMEOUT": "240", "VSBENCH_CASES_ONLY": "reference",
           "VSBENCH_CASES_ARGS": "cases/test_bug2_empty_detection.py"}
    import time

    start = time.monotonic()
    proc = run_vsbench(["run", "cases", "--impl", "hung_impl:HUNG", "--no-cache", "--out", str(workdir / "out")],
                       env, timeout=600)
    seconds = time.monotonic() - start
    path = workdir / "out" / "results" / "cases.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    impls = data.get("metrics", {}).get("implementations", {})
    hung = impls.get("hung_impl:HUNG", {})
    timed_out = [line for line in hung.get("bugs_found", []) if "timed out" in line]
    return {"exit": proc.returncode, "seconds": seconds, "suites_reported": sorted(impls),
            "hung_cases_timed_out": len(timed_out), "hung_cases_passed": sum(o == "passed" for o in hung.get("outcomes", {}).values()),
            "message_names_part": "in part 'postprocess' of hung-postprocess" in json.dumps(data) or
                                  "in part 'postprocess'" in proc.stdout + proc.stderr,
            "log_tail": (proc.stdout + proc.stderr)[-1500:]}


def null_detector_checkpoint(path: Path) -> Path:
    """A tiny Pix2Seq checkpoint that detects nothing: its output layer always puts EOS first."""
    import torch

    from reference.pix2seq.checkpoint import save_checkpoint
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig

    torch.manual_seed(0)
    model = Pix2Seq(Pix2SeqConfig.tiny())
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        model.decoder.output.bias.zero_()
        model.decoder.output.bias[model.vocab.eos] = 10.0
    return save_checkpoint(path, model, {"seed": 0, "command": "null detector (fault test)"})


def empty_model_run(workdir: Path, limit: int = 16) -> dict[str, Any]:
    """`vsbench run detection` on a model that detects nothing: the known-bad stages that crash on it are
    recorded as stage failures, and the reference metrics are published beside them (not lost)."""
    checkpoint = null_detector_checkpoint(workdir / "null.safetensors")
    out = workdir / "out"
    proc = run_vsbench(["run", "detection", "--device", "cpu", "--limit", str(limit), "--no-cache", "--out", str(out)],
                       {"VSBENCH_PIX2SEQ_CHECKPOINT": str(checkpoint)})
    path = out / "results" / "detection.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    impact = data.get("metrics", {}).get("bug_impact", {})
    crashed = sorted(label for label, s in impact.items() if any("stage raised" in e for e in s.get("errors", [])))
    return {"exit": proc.returncode, "published": path.is_file(),
            "reference_AP": impact.get("reference", {}).get("AP"), "stages_that_raised": crashed,
            "log_tail": (proc.stdout + proc.stderr)[-1200:]}
