"""The `cases` benchmark: the regression suite run for every registered implementation (the reference,
each known-bad replica with an expected-failures file, every --impl), as a matrix case x implementation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
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
    exit_code: int = 0
    expected_failures: list[str] = field(default_factory=list)
    log_tail: str = ""


def registered_implementations(root: Path, extra: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, spec, expected failures) for the reference, each expected-failures file, each --impl."""
    found = [(REFERENCE, "", [])]
    for path in sorted((root / "cases" / "known_bad" / "expected_failures").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        spec = next((ln[len(SPEC_PREFIX):].strip() for ln in lines if ln.startswith(SPEC_PREFIX)), "")
        if not spec:
            raise ValueError(f"{path}: first line must be '{SPEC_PREFIX} MODULE:OBJECT'")
        expected = [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
        found.append((path.stem, spec, expected))
    found.extend((spec, spec, []) for spec in extra)
    return found


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    outcomes, properties = {}, {}
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        module = module.split("cases/", 1)[-1] if "cases/" in module else module
        case_id = f"{module}.py::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
            elif child.tag in ("failure", "error"):
                outcome = "xpassed" if "XPASS(strict)" in (child.get("message") or "") else "failed"
        outcomes[case_id] = outcome
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if props:
            properties[case_id] = props
    return outcomes, properties


def run_suite(root: Path, name: str, spec: str, expected: list[str]) -> SuiteRun:
    run = SuiteRun(name=name, spec=spec, expected_failures=expected)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "cases", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
               "-o", "junit_family=xunit1"]
        if spec:
            cmd.append(f"--impl={spec}")
        env = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
               "OMP_NUM_THREADS": "1", "VSBENCH_IMPL": ""}
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        run.exit_code = proc.returncode
        run.log_tail = (proc.stdout + proc.stderr)[-3000:]
        if junit.is_file():
            run.outcomes, run.properties = parse_junit(junit)
    return run


CELL = {"passed": "pass", "failed": "**FAIL**", "xfailed": "fails (expected)",
        "xpassed": "**passes, listed as failing**", "skipped": "n/a"}


def run_is_as_expected(run: SuiteRun) -> bool:
    return run.exit_code == 0 and bool(run.outcomes) and not any(o in ("failed", "xpassed") for o in run.outcomes.values())


def build_result(runs: list[SuiteRun], ctx: RunContext) -> BenchmarkResult:
    case_ids = sorted({c for r in runs for c in r.outcomes})
    matrix = [[c.replace("test_", "", 1)] + [CELL[r.outcomes.get(c, "skipped")] for r in runs] for c in case_ids]
    summary = []
    for r in runs:
        counts = {k: sum(1 for o in r.outcomes.values() if o == k) for k in CELL}
        summary.append([r.name, r.spec or "each family's reference", counts["passed"], counts["xfailed"],
                        counts["failed"], counts["xpassed"], counts["skipped"], r.exit_code,
                        "yes" if run_is_as_expected(r) else "**NO**"])
    impact_rows = []
    for r in runs:
        for case_id, props in sorted(r.properties.items()):
            if "mAP" in props:
                impact_rows.append([r.name, case_id, float(props.get("mAP") or "nan"), float(props.get("AP50") or "nan"),
                                    float(props["images_wrong_fraction"]), float(props["images_missing_fraction"])])
    ok = all(run_is_as_expected(r) for r in runs)
    failures_text = "\n\n".join(f"`{r.name}` exit code {r.exit_code}:\n\n```\n{r.log_tail[-1500:]}\n```"
                                for r in runs if not run_is_as_expected(r))
    sections = [
        Section("Summary", text=(
            "Each implementation runs the whole case suite (`pytest cases/ --impl SPEC`). Cases listed in an "
            "implementation's expected-failures file run as strict xfail: 'fails (expected)' is the case "
            "catching a known bug; a listed case that passes fails the run. 'n/a' = the implementation "
            "provides no part of that case's family."),
            tables=[Table(["implementation", "spec", "pass", "fails (expected)", "FAIL", "passes but listed",
                           "n/a", "pytest exit", "as expected"], summary)]),
        Section("Case x implementation", tables=[Table(["case"] + [r.name for r in runs], matrix)]),
    ]
    if impact_rows:
        sections.append(Section("Bug 4 impact, measured", text=(
            "Perfect stand-in model (each image's own ground-truth sequence, probability 1) on a fixed "
            "ground truth of 50 images with 1-6 objects each, through each implementation's pipeline."),
            tables=[Table(["implementation", "case", "mAP", "AP50", "images with wrong predictions",
                           "images without predictions"], impact_rows)]))
    if failures_text:
        sections.append(Section("Unexpected outcomes", text=failures_text))
    return BenchmarkResult(
        benchmark="cases", report="cases", title="Bug-regression cases",
        metrics={"as_expected": ok, "implementations": {r.name: {"outcomes": r.outcomes, "exit_code": r.exit_code,
                                                                 "properties": r.properties} for r in runs}},
        config={"implementations": [[r.name, r.spec] for r in runs], "hypothesis_profile":
                os.environ.get("HYPOTHESIS_PROFILE", "ci")},
        seeds={"hypothesis_derandomized": 1}, sections=sections, ok=ok,
        problems=[f"{r.name}: outcomes differ from its expected-failure list (pytest exit {r.exit_code}); "
                  f"see 'Unexpected outcomes' in reports/cases.md" for r in runs if not run_is_as_expected(r)])


@register_benchmark("cases", description="regression cases x implementations matrix", report="cases",
                    report_title="Bug-regression cases")
def run(ctx: RunContext) -> BenchmarkResult:
    root = repo_root()
    if root is None:
        raise FileNotFoundError("cases/ not found: run from the vsbench checkout or set VSBENCH_ROOT")
    impls = registered_implementations(root, ctx.impls)
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        runs = list(pool.map(lambda item: run_suite(root, *item), impls))
    return build_result(runs, ctx)
