"""`reliability`: every fault tried, as a report: the bad-input table (each entry a test), a killed-and-
resumed run, torchrun parity, a failing torchrun rank, a code change invalidating the cache, a run
killed while publishing, a model that detects nothing (a crashing stage) and a hung --impl part."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.benchmarks.detection import checkpoint_path
from bench.faults import (code_change_run, distributed_run, empty_model_run, failing_rank_run, hung_impl_run,
                          interrupted_run, kill_during_publish_run)
from bench.registry import RunContext, register_benchmark
from bench.reliability import BAD_INPUTS, check
from bench.results import BenchmarkResult, Section, Table

TABLE_TEST = "tests/test_reliability.py::test_bad_input_gives_a_clear_error[{}]"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _scenarios(scratch: Path, limit: int) -> dict:
    return {
        "fault": interrupted_run(scratch / "fault", limit=limit, kill_after=1),
        "parallel": [distributed_run(scratch / f"dist{n}", n, limit=size) for n, size in ((2, 37), (3, 2))],
        "failing_rank": failing_rank_run(scratch / "failrank"),
        "code_change": code_change_run(scratch / "code"),
        "publish_kill": kill_during_publish_run(scratch / "publish"),
        "empty_model": empty_model_run(scratch / "empty"),
        "hung": hung_impl_run(scratch / "hung"),
    }


def _scenario_rows(s: dict, limit: int) -> tuple[list[list], list[str]]:
    """One row per demonstrated fault: what was done, what was seen, as expected, the test that checks it."""
    f, rank, code, pub, empty, hung = (s["fault"], s["failing_rank"], s["code_change"], s["publish_kill"],
                                       s["empty_model"], s["hung"])
    checks = [
        ("killed-and-resumed", f"`run detection --limit {limit}` SIGKILLed after its 1st stored batch of 16, then rerun",
         f"killed exit {f['killed_exit']}, half-written files: {', '.join(f['half_written_after_kill']) or 'none'}, "
         f"report before the kill: {f['report_written_before_kill']}; resumed {f['resumed_from_cache']} from the cache, "
         f"{f['resumed_computed']} generated; metrics equal {f['metrics_equal']}, per-sample outputs equal {f['samples_equal']}",
         f["killed_exit"] == -9 and f["resumed_exit"] == 0 and f["metrics_equal"] and f["samples_equal"]
         and not f["half_written_after_kill"] and f["resumed_computed"] == limit - 16,
         "tests/test_faults.py::test_killed_run_resumes_to_the_same_metrics"),
        *[(f"torchrun-{p['nproc']}-ranks", f"`torchrun --nproc_per_node {p['nproc']}` on {p['samples']} samples vs one process",
           f"exit {p['torchrun_exit']}; metrics equal {p['metrics_equal']}; per-sample outputs match {p['samples_match']}",
           p["torchrun_exit"] == 0 and p["metrics_equal"] and p["samples_match"],
           "tests/test_faults.py::test_torchrun_equals_one_process") for p in s["parallel"]],
        ("torchrun-failing-rank", f"torchrun with 2 ranks, rank {rank['fail_rank']} raises in its first batch "
         "(was: the other rank waited 30 min in the gather)",
         f"exit {rank['exit']}; every rank gone {rank['seconds_after_failure'] or float('nan'):.1f} s after the failure "
         f"({rank['seconds']:.0f} s with start-up); log names rank {rank['fail_rank']} and its error: "
         f"{rank['names_failing_rank']}; nothing published: {not rank['published']}",
         rank["exit"] != 0 and rank["names_failing_rank"] and not rank["published"]
         and (rank["seconds_after_failure"] or 99) < 30, "tests/test_faults.py::test_a_failing_rank_stops_every_rank_within_seconds"),
        ("code-change", "the same run cold, warm, then with one line of reference/pix2seq/generate.py edited "
         "(was: all samples served from the cache with the old AP)",
         "; ".join(f"{step}: exit {code_}, {cached} cached, {computed} generated" for step, code_, cached, computed
                   in code["runs"]), code["ok"], "tests/test_faults.py::test_a_code_change_invalidates_the_cache"),
        ("killed-while-publishing", "a second run SIGKILLed between its PUBLISH marker and the renames, then "
         "`vsbench report`", f"killed exit {pub['killed_exit']}; rolled forward {pub['rolled_forward']}; "
         f"artefacts match the results JSON: {not pub['artifact_problems']}; staging left: {pub['staging_left']}",
         pub["killed_exit"] == -9 and pub["rolled_forward"] and not pub["artifact_problems"] and not pub["staging_left"],
         "tests/test_faults.py::test_a_run_killed_while_publishing_is_rolled_forward"),
        ("stage-crash", "a model that detects nothing (was: the replica stage's KeyError 'image_id' lost the reference "
         "metrics)", f"exit {empty['exit']}; published {empty['published']}; reference AP {empty['reference_AP']}; "
         f"stages that raised (reported as data): {', '.join(empty['stages_that_raised']) or 'none'}",
         empty["exit"] == 0 and empty["published"] and empty["reference_AP"] == 0.0,
         "tests/test_faults.py::test_a_crashing_stage_keeps_the_other_stages"),
        ("hung-impl-part", "`vsbench run cases --impl hung_impl:HUNG` whose postprocess never returns, case limit 5 s "
         "(was: the suite hung and nothing was written)",
         f"exit {hung['exit']} in {hung['seconds']:.0f} s; suites reported: {', '.join(hung['suites_reported'])}; "
         f"{hung['hung_cases_timed_out']} cases timed out naming the part: {hung['message_names_part']}; "
         f"{hung['hung_cases_passed']} of its cases passed", hung["exit"] == 0 and hung["hung_cases_timed_out"] > 0
         and hung["message_names_part"] and len(hung["suites_reported"]) == 2,
         "tests/test_faults.py::test_a_hung_impl_part_times_out_and_every_suite_is_reported"),
    ]
    rows = [[name, _short(what, 150), _short(seen, 260), _yes(ok), f"`{test}`"] for name, what, seen, ok, test in checks]
    problems = [f"{name}: {_short(seen, 300)}" for name, _, seen, ok, _ in checks if not ok]
    return rows, problems


@register_benchmark("reliability", description="every fault tried: bad inputs, kills, torchrun, cache, hung parts",
                    report="reliability", report_title="Reliability")
def run(ctx: RunContext) -> BenchmarkResult:
    limit = 24 if ctx.quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        outcomes = [check(entry, scratch / "bad") for entry in BAD_INPUTS]
        scenarios = _scenarios(scratch, limit)
    bad_rows = [[o.entry.name, _short(o.entry.description, 110), _short(o.entry.expected, 90), _short(o.seen),
                 _yes(o.ok), f"`{TABLE_TEST.format(o.entry.name)}`"] for o in outcomes]
    scenario_rows, problems = _scenario_rows(scenarios, limit)
    problems = [f"bad input {o.entry.name}: expected {o.entry.expected}, saw {_short(o.seen)}" for o in outcomes
                if not o.ok] + problems
    total = len(outcomes) + len(scenario_rows)
    metrics = {"faults": total, "as_expected": total - len(problems), "bad_inputs": {o.entry.name: o.ok for o in outcomes},
               **{k: v for k, v in scenarios.items() if k != "parallel"}, "distributed": scenarios["parallel"]}
    for value in metrics.values():
        if isinstance(value, dict):
            value.pop("log_tail", None)
    for p in metrics["distributed"]:
        p.pop("log_tail", None)
    return BenchmarkResult(
        benchmark="reliability", report="reliability", title="Faults and hostile input",
        metrics=metrics, config={"fault_limit": limit, "distributed": [[2, 37], [3, 2]]}, seeds={"seed": ctx.seed},
        ok=not problems, problems=problems,
        sections=[
            Section("Summary", text=(
                f"{total} faults tried, {total - len(problems)} behave as stated. The design that makes this "
                "structural (docs/design.md §9): a run's files are staged and published together after a PUBLISH "
                "marker (or kept beside as `failed/<benchmark>/`), each stage of a benchmark is isolated, the "
                "per-sample cache key holds a fingerprint of the code and of the data's bytes, every wait is "
                "bounded (torchrun syncs through the store with an abort key, a per-case and a per-suite time "
                "limit), and every public entry point validates its input. Scratch paths are shown as `<scratch>`.")),
            Section("Bad inputs", text=(
                "Each input is built in a scratch folder and sent through the real code path; the table "
                "(`bench/reliability.py`, `bench/reliability_harness.py`) is also the test: each row is one "
                "parametrized case of `tests/test_reliability.py`."),
                tables=[Table(["fault", "input", "expected", "seen", "as expected", "test"], bad_rows,
                              kinds=["text"] * 6)]),
            Section("Faults of whole runs", text=(
                f"Real `vsbench` subprocesses (checkpoint `{checkpoint_path().name}` unless stated, CPU). "
                "Per-sample outputs under torchrun: token ids equal, probabilities within 1e-3 (other batch sizes)."),
                tables=[Table(["fault", "what was done", "seen", "as expected", "test"], scenario_rows,
                              kinds=["text"] * 5)]),
        ])
