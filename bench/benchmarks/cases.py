"""The `cases` benchmark: the regression suite run for every registered implementation (the reference,
each known-bad replica with an expected-failures file, every --impl), as a matrix case x implementation.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from bench.plugins import repo_root
from bench.registry import RunContext, register_benchmark
from bench.results import BenchmarkResult, Section, Table

REFERENCE = "reference"
SPEC_PREFIX = "# spec:"


@dataclass
class SuiteRun:
    """One `pytest cases/` run: outcome per case id, recorded properties, pytest's exit code."""

    name: str
    spec: str  # "" = each family's reference
    outcomes: dict[str, str] = field(default_factory=dict)  # case id -> passed|failed|xfailed|xpassed|skipped
    properties: dict[str, dict[str, str]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # case id -> tail of the failure message
    exit_code: int = 0
    expected_failures: list[str] = field(default_factory=list)
    log_tail: str = ""
    timed_out: bool = False
    seconds: float = 0.0
    env: str = ""  # the tox env a real peer needs ("" = this interpreter)
    not_run: str = ""  # why the suite could not run here (its env is not built)


def expected_failure_files(root: Path) -> list[Path]:
    """Every expected-failures list: the known-bad replicas' and the real peers' (cases/adapters/)."""
    return sorted(p for folder in ("known_bad", "adapters") for p in (root / "cases" / folder / "expected_failures").glob("*.txt"))


ENV_PREFIX = "# env:"


def registered_implementations(root: Path, extra: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, spec, expected failures) for the reference, each expected-failures file, each --impl."""
    from cases.conftest import read_expected_failures

    found = [(REFERENCE, "", [])]
    for path in expected_failure_files(root):
        lines = path.read_text(encoding="utf-8").splitlines()
        spec = next((ln[len(SPEC_PREFIX):].strip() for ln in lines if ln.startswith(SPEC_PREFIX)), "")
        if not spec:
            raise ValueError(f"{path}: first line must be '{SPEC_PREFIX} MODULE:OBJECT'")
        found.append((path.stem, spec, read_expected_failures(path)))
    found.extend((spec, spec, []) for spec in extra)
    return found


def required_env(root: Path, name: str) -> str:
    """The tox env an expected-failures file asks for (`# env: NAME ...` line), else ""."""
    for folder in ("known_bad", "adapters"):
        path = root / "cases" / folder / "expected_failures" / f"{name}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith(ENV_PREFIX):
                    return line[len(ENV_PREFIX):].split()[0]
    return ""


def env_python(root: Path, env: str) -> Path | None:
    """The interpreter of tox env `env` (VSBENCH_ENV_<ENV>_PYTHON, else <root>/.tox/<env>/bin/python)."""
    override = os.environ.get(f"VSBENCH_ENV_{env.upper().replace('-', '_')}_PYTHON")
    path = Path(override) if override else root / ".tox" / env / "bin" / "python"
    return path if path.is_file() else None


def read_case_log(path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, str]]:
    """(outcomes, properties, failure messages) by case id from the JSON lines cases/conftest.py appends."""
    outcomes, properties, messages = {}, {}, {}
    if not path.is_file():
        return outcomes, properties, messages
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed suite may be cut
        case = record["case"]
        if record["when"] == "setup" and record["outcome"] == "failed":
            outcomes[case] = "failed"
        elif case not in outcomes or record["when"] == "call":
            outcomes[case] = record["outcome"]
        if record.get("properties"):
            properties[case] = record["properties"]
        if record.get("message"):
            messages[case] = record["message"]
    return outcomes, properties, messages


def suite_timeout() -> float:
    return float(os.environ.get("VSBENCH_SUITE_TIMEOUT", "1800"))


def suite_profile() -> str:
    """The Hypothesis profile of the suites: VSBENCH_CASES_PROFILE, else HYPOTHESIS_PROFILE, else ci. (ci-noshrink
    was tried as the default: it did not shorten the slow suites, and a case cut by the per-case timeout during
    Hypothesis' replay then reports FlakyStrategyDefinition instead of the timeout naming the part.)"""
    return os.environ.get("VSBENCH_CASES_PROFILE") or os.environ.get("HYPOTHESIS_PROFILE", "ci")


def run_suite(root: Path, name: str, spec: str, expected: list[str]) -> SuiteRun:
    """`pytest cases` for one implementation in a subprocess, bounded by VSBENCH_SUITE_TIMEOUT seconds (the
    cases that finished before a timeout are kept); VSBENCH_CASES_ARGS narrows the cases run (pytest args)."""
    run = SuiteRun(name=name, spec=spec, expected_failures=expected, env=required_env(root, name))
    python = Path(sys.executable)
    if run.env:
        python = env_python(root, run.env)
        if python is None:
            run.not_run = f"needs the `{run.env}` environment: build it with `tox -e {run.env}`"
            return run
    selection = shlex.split(os.environ.get("VSBENCH_CASES_ARGS", "")) or ["cases"]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "cases.jsonl"
        cmd = [str(python), "-m", "pytest", *selection, "-q", "-p", "no:cacheprovider", "-W", "ignore"]
        if spec:
            cmd.append(f"--impl={spec}")
        env = {**os.environ, "HYPOTHESIS_PROFILE": suite_profile(),
               "OMP_NUM_THREADS": "1", "VSBENCH_IMPL": "", "VSBENCH_CASES_LOG": str(log)}
        if run.env:  # another interpreter: it imports this checkout's sources, not an installed vsbench
            env["PYTHONPATH"] = os.pathsep.join([str(root), *[p for p in [os.environ.get("PYTHONPATH")] if p]])
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=suite_timeout())
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            run.timed_out = True
        run.seconds = time.perf_counter() - start
        run.exit_code = proc.returncode
        run.log_tail = (output or "")[-3000:]
        run.outcomes, run.properties, run.messages = read_case_log(log)
    return run


CELL = {"passed": "pass", "failed": "**FAIL**", "xfailed": "fails (expected)",
        "xpassed": "**passes, listed as failing**", "skipped": "n/a"}


def run_is_as_expected(run: SuiteRun) -> bool:
    if run.not_run:
        return True  # reported as not run, with the command that builds its environment
    return (run.exit_code == 0 and not run.timed_out and bool(run.outcomes)
            and not any(o in ("failed", "xpassed") for o in run.outcomes.values()))


def is_listed(run: SuiteRun) -> bool:
    """The reference and the implementations with an expected-failures list are checked against it; an
    extra --impl is measured, its failures are findings (bugs found), not a failed benchmark."""
    return run.name == REFERENCE or bool(run.expected_failures)


def bugs_found(run: SuiteRun) -> list[str]:
    """One line per failing case (expected or not): the bug or invariant it stands for and the stage it tested."""
    lines = []
    for case_id, outcome in sorted(run.outcomes.items()):
        if outcome not in ("failed", "xfailed"):
            continue
        props = run.properties.get(case_id, {})
        meaning = props.get("stands_for") or "(the case names no bug)"
        stage = f" [stage: {props['stage']}]" if props.get("stage") else ""
        timeout = " (timed out)" if "did not finish within" in run.messages.get(case_id, "") else ""
        lines.append(f"`{case_id.replace('test_', '', 1)}`: {meaning}{stage}{timeout}")
    return lines


def build_result(runs: list[SuiteRun], ctx: RunContext) -> BenchmarkResult:
    case_ids = sorted({c for r in runs for c in r.outcomes})
    matrix = [[c.replace("test_", "", 1)] + [CELL[r.outcomes.get(c, "skipped")] for r in runs] for c in case_ids]
    summary = []
    for r in runs:
        counts = {k: sum(1 for o in r.outcomes.values() if o == k) for k in CELL}
        verdict = ("yes" if run_is_as_expected(r) else "**NO**") if is_listed(r) else "measured (no list)"
        if r.not_run:
            verdict = f"not run: {r.not_run}"
        summary.append([r.name, r.spec or "each family's reference", counts["passed"], counts["xfailed"],
                        counts["failed"], counts["xpassed"], counts["skipped"], r.exit_code,
                        f"{r.seconds:.0f} s" + (" TIMED OUT" if r.timed_out else "") + (f" (env {r.env})" if r.env else ""),
                        verdict])
    impact_rows = []
    for r in runs:
        for case_id, props in sorted(r.properties.items()):
            if "mAP" in props:
                impact_rows.append([r.name, case_id, float(props.get("mAP") or "nan"), float(props.get("AP50") or "nan"),
                                    float(props["images_wrong_fraction"]), float(props["images_missing_fraction"])])
    checked = [r for r in runs if is_listed(r)]
    ok = all(run_is_as_expected(r) for r in checked)
    unexpected = []
    for r in runs:
        if run_is_as_expected(r):
            continue
        bad = [c for c, o in sorted(r.outcomes.items()) if o in ("failed", "xpassed")]
        detail = "\n\n".join(f"- `{c}` ({r.outcomes[c]}):\n\n```\n{r.messages.get(c, '')[-500:].strip()}\n```"
                              for c in bad[:10])
        unexpected.append(f"`{r.name}`: pytest exit code {r.exit_code}{', timed out after ' + str(int(r.seconds)) + ' s' if r.timed_out else ''}; "
                          f"{len(bad)} cases failed or passed against the list." + (f"\n\n{detail}" if detail else
                          f"\n\n```\n{r.log_tail[-1500:]}\n```"))
    found = "\n\n".join(f"**{r.name}** ({len(bugs_found(r))}):\n\n" + "\n".join(f"- {line}" for line in bugs_found(r))
                         for r in runs if bugs_found(r))
    sections = [
        Section("Summary", text=(
            "Each implementation runs the whole case suite (`pytest cases/ --impl SPEC`), each in its own process "
            f"bounded by {suite_timeout():g} s (VSBENCH_SUITE_TIMEOUT), each case by the per-case limit "
            "(VSBENCH_CASE_TIMEOUT). Cases listed in an implementation's expected-failures file run as strict "
            "xfail: 'fails (expected)' is the case catching a known bug; a listed case that passes fails the run. "
            "'n/a' = the implementation provides no part of that case's family. An --impl without a list is "
            f"measured: its failures are bugs found, not a failed benchmark. Hypothesis profile {suite_profile()} "
            "(VSBENCH_CASES_PROFILE)."),
            tables=[Table(["implementation", "spec", "pass", "fails (expected)", "FAIL", "passes but listed",
                           "n/a", "pytest exit", "time", "as expected"], summary,
                          kinds=["text", "text", "count", "count", "count", "count", "count", "count", "text", "text"])]),
        Section("Bugs found", text=(
            "For each implementation, every case it fails: the published bug or invariant the case stands for "
            "and the one stage it tested.\n\n" + (found or "No implementation fails a case."))),
        Section("Case x implementation", tables=[Table(["case"] + [r.name for r in runs], matrix)]),
    ]
    if impact_rows:
        sections.append(Section("Bug 4 impact, measured", text=(
            "Perfect stand-in model (each image's own ground-truth sequence, probability 1) on a fixed "
            "ground truth of 50 images with 1-6 objects each, through each implementation's pipeline."),
            tables=[Table(["implementation", "case", "mAP", "AP50", "images with wrong predictions",
                           "images without predictions"], impact_rows)]))
    if unexpected:
        sections.append(Section("Unexpected outcomes", text="\n\n".join(unexpected)))
    return BenchmarkResult(
        benchmark="cases", report="cases", title="Bug-regression cases",
        metrics={"as_expected": ok, "implementations": {r.name: {
            "outcomes": r.outcomes, "exit_code": r.exit_code, "timed_out": r.timed_out, "properties": r.properties,
            "bugs_found": bugs_found(r)} for r in runs}},
        config={"implementations": [[r.name, r.spec] for r in runs], "hypothesis_profile": suite_profile(), "cases_args": os.environ.get("VSBENCH_CASES_ARGS", "")},
        seeds={"hypothesis_derandomized": 1}, sections=sections, ok=ok,
        problems=[f"{r.name}: outcomes differ from its expected-failure list (pytest exit {r.exit_code}"
                  f"{', timed out' if r.timed_out else ''}); see 'Unexpected outcomes' in the cases report"
                  for r in checked if not run_is_as_expected(r)])


SLOW_SUITES = ("pix2seqv2-public", "port-replica")  # measured: 894 s and 357 s on 2 cores, the others <= 63 s


@register_benchmark("cases", description="regression cases x implementations matrix", report="cases",
                    report_title="Bug-regression cases")
def run(ctx: RunContext) -> BenchmarkResult:
    from bench.progress import Progress

    root = repo_root()
    if root is None:
        raise FileNotFoundError("cases/ not found: run from the vsbench checkout or set VSBENCH_ROOT")
    impls = registered_implementations(root, ctx.impls)
    only = [n for n in os.environ.get("VSBENCH_CASES_ONLY", "").split(",") if n]
    if only:  # a subset of the registered implementations (the reliability demo); --impl ones always run
        impls = [i for i in impls if i[0] in only or i[1] in ctx.impls]
    finished: dict[str, SuiteRun] = {}
    with Progress(total=len(impls), desc="cases: suites", unit="suite") as bar, \
            ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        # the slowest suites first (they run the Pix2Seq generation loops), so that they overlap the short ones
        slow_first = sorted(impls, key=lambda item: item[0] not in SLOW_SUITES)
        futures = {pool.submit(run_suite, root, *item): item[0] for item in slow_first}
        for future in as_completed(futures):
            suite = future.result()
            finished[suite.name] = suite
            counts = {k: sum(1 for o in suite.outcomes.values() if o == k) for k in CELL}
            bar.update(1, last=f"{suite.name} {counts['passed']} pass / {counts['xfailed']} expected / "
                               f"{counts['failed']} FAIL in {suite.seconds:.0f} s{' TIMED OUT' if suite.timed_out else ''}")
            print(f"[vsbench] cases: {suite.name}: {counts['passed']} passed, {counts['xfailed']} failed as expected, "
                  f"{counts['failed']} failed, {counts['xpassed']} passed against the list, {counts['skipped']} n/a "
                  f"({suite.seconds:.0f} s{', TIMED OUT' if suite.timed_out else ''})", flush=True)
    return build_result([finished[name] for name, _, _ in impls], ctx)
