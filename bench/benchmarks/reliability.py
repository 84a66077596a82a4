"""`reliability`: the bad-input table, a SIGKILLed-and-resumed run and torchrun parity, as a report."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.benchmarks.detection import checkpoint_path
from bench.faults import distributed_run, interrupted_run
from bench.registry import RunContext, register_benchmark
from bench.reliability import BAD_INPUTS, check
from bench.results import BenchmarkResult, Section, Table


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@register_benchmark("reliability", description="bad inputs, interrupted + resumed run, torchrun parity",
                    report="reliability", report_title="Reliability")
def run(ctx: RunContext) -> BenchmarkResult:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        outcomes = [check(entry, scratch / "bad") for entry in BAD_INPUTS]
        limit = 24 if ctx.quick else 48
        fault = interrupted_run(scratch / "fault", limit=limit, kill_after=1)
        parallel = [distributed_run(scratch / f"dist{n}", n, limit=size) for n, size in ((2, 37), (3, 2))]
    bad_rows = [[o.entry.name, _short(o.entry.description, 80), _short(o.entry.expected, 70), _short(o.seen),
                 "yes" if o.ok else "**NO**"] for o in outcomes]
    fault_ok = (fault["killed_exit"] == -9 and fault["resumed_exit"] == 0 and fault["metrics_equal"]
                and fault["samples_equal"] and not fault["half_written_after_kill"]
                and fault["resumed_computed"] == limit - 16)
    fault_rows = [
        ["uninterrupted run exit code", fault["uninterrupted_exit"]],
        ["run killed by SIGKILL after its 1st stored batch of 16: exit code", fault["killed_exit"]],
        ["half-written files after the kill (temp files, unreadable JSON)", ", ".join(fault["half_written_after_kill"]) or "none"],
        ["report written by the killed run", fault["report_written_before_kill"]],
        ["resumed run: samples served from the cache", fault["resumed_from_cache"]],
        ["resumed run: samples generated", fault["resumed_computed"]],
        ["metrics identical to the uninterrupted run", fault["metrics_equal"]],
        ["per-sample outputs identical", fault["samples_equal"]],
    ]
    dist_rows = [[p["nproc"], p["samples"], p["torchrun_exit"], p["metrics_equal"], p["samples_match"]] for p in parallel]
    dist_ok = all(p["torchrun_exit"] == 0 and p["metrics_equal"] and p["samples_match"] for p in parallel)
    problems = [f"bad input {o.entry.name}: expected {o.entry.expected}, saw {_short(o.seen)}" for o in outcomes if not o.ok]
    problems += [] if fault_ok else [f"kill-and-resume: {_short(str({k: v for k, v in fault.items() if k != 'log_tail'}), 300)}"]
    problems += [f"torchrun {p['nproc']} processes: exit {p['torchrun_exit']}, metrics equal {p['metrics_equal']}, "
                 f"per-sample outputs match {p['samples_match']}" for p in parallel
                 if not (p["torchrun_exit"] == 0 and p["metrics_equal"] and p["samples_match"])]
    ok = not problems
    return BenchmarkResult(
        benchmark="reliability", report="reliability", title="Bad input and faults",
        metrics={"bad_inputs": {o.entry.name: o.ok for o in outcomes}, "fault": {k: v for k, v in fault.items() if k != "log_tail"},
                 "distributed": [{k: v for k, v in p.items() if k != "log_tail"} for p in parallel]},
        config={"fault_limit": limit, "distributed": [[2, 37], [3, 2]]}, seeds={"seed": ctx.seed}, ok=ok, problems=problems,
        sections=[
            Section("Bad inputs", text=(
                "Each input is built in a scratch folder and sent through the real code path (readers, "
                "evaluation, tokenizer, checkpoint loader, --impl loader); `tests/test_reliability.py` runs the "
                "same table (`bench/reliability.py`)."),
                tables=[Table(["case", "input", "expected", "seen", "as expected"], bad_rows)]),
            Section("A run killed mid-way, then resumed", text=(
                f"`vsbench run detection --limit {limit}` (checkpoint `{checkpoint_path().name}`, CPU) three times: uninterrupted; "
                "with VSBENCH_KILL_AFTER_BATCHES=1, which SIGKILLs the process right after its first batch of 16 "
                "samples is committed to the per-sample cache; then the same command again, resuming."),
                tables=[Table(["check", "value"], fault_rows)]),
            Section("torchrun: exactly-once sharding", text=(
                "`torchrun --standalone --nproc_per_node N -m bench run detection --no-cache` (gloo, CPU) against "
                "one process. Samples are sharded ids[rank::N] without padding, gathered to rank 0, and "
                "'each sample exactly once' is asserted there; with 3 ranks and 2 samples one rank gets none. "
                "Per-sample outputs: token ids equal, probabilities within 1e-3 (batches of another size)."),
                tables=[Table(["processes", "samples", "torchrun exit", "metrics identical", "per-sample outputs match"],
                              dist_rows)]),
        ])
