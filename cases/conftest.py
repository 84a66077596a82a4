"""Plugin of the regression cases: --impl / VSBENCH_IMPL selects the implementation under test.

Fixtures: `impl` (the object under test for the case's family), `part` (`part("encode")` returns that
attribute or fails the case naming the missing part) and `api` (`api.encode(...)`). Each case module
declares its family with `pytestmark = pytest.mark.<family>`, and what it stands for with
`pytest.mark.case(stands_for=..., stage=...)`. Known failures listed for the implementation run as
strict xfail, so a fixed bug shows up as an unexpected pass.

Bounded and robust against the implementation under test (docs/design.md §9):
- every case has a time limit (--case-timeout, env VSBENCH_CASE_TIMEOUT, default 300 s): a part that
  never returns fails its case with a message naming the part, and the suite goes on;
- a part that raises when read (a property) or returns None where its contract promises a value fails
  the case that needs it, naming the part; collection never crashes because of the implementation;
- with VSBENCH_CASES_LOG=FILE every case's outcome is appended to FILE as a JSON line when it ends, so
  a suite that is killed still tells which cases finished (the `cases` benchmark reads it).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import threading
import warnings
from pathlib import Path

import pytest

from bench.testing import load_hypothesis_profile
from cases.interface import (ImplementationError, families, implementation_name, load_implementation,
                             provides_family, read_part)

load_hypothesis_profile()
EXPECTED_FAILURES_DIRS = [Path(__file__).parent / "known_bad" / "expected_failures",
                          Path(__file__).parent / "adapters" / "expected_failures"]
DEFAULT_CASE_TIMEOUT = 300.0
_CURRENT_PART: dict[str, object] = {"name": None, "timed_out": None}


def pytest_addoption(parser):
    group = parser.getgroup("vsbench")
    group.addoption("--impl", default=os.environ.get("VSBENCH_IMPL", ""), metavar="MODULE:OBJECT",
                    help="implementation under test (default: each family's reference); env VSBENCH_IMPL")
    group.addoption("--expected-failures", default=os.environ.get("VSBENCH_EXPECTED_FAILURES", ""),
                    metavar="FILE", help="file of case ids expected to fail (strict xfail) for --impl: one per "
                                         "line, as pytest prints them (cases/test_x.py::test_y) or without cases/")
    group.addoption("--case-timeout", type=float,
                    default=float(os.environ.get("VSBENCH_CASE_TIMEOUT", DEFAULT_CASE_TIMEOUT)), metavar="SECONDS",
                    help=f"time limit of one case (default {DEFAULT_CASE_TIMEOUT:g}; 0 = none); env VSBENCH_CASE_TIMEOUT")


def case_key(entry: str) -> str:
    """A case id as the lists hold it: relative to cases/ (`test_x.py::test_y[...]`), whatever the prefix."""
    entry = entry.strip().replace("\\", "/")
    if "cases/" in entry.split("::", 1)[0]:
        entry = entry.split("cases/", 1)[1]
    return entry


def read_expected_failures(path: Path) -> list[str]:
    """Lines of an expected-failures file: case ids (`test_x.py::test_y`, `cases/test_x.py::test_y`, with
    or without a `[param]` suffix), each optionally followed by `# reason`; '#' lines are comments."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(case_key(line))
    return lines


def matches(case_id: str, entry: str) -> bool:
    return case_id == entry or case_id.startswith(entry + "[") or case_id.startswith(entry + "::")


class _Selection:
    def __init__(self, config):
        self.spec = config.getoption("--impl")
        self.families = families()
        self.objects, self.names = {}, {}
        for fam in self.families.values():
            spec = self.spec or fam.reference_spec
            try:
                obj = load_implementation(spec)
            except ImplementationError as err:
                raise pytest.UsageError(str(err)) from err
            self.objects[fam.name] = obj
            self.names[fam.name] = implementation_name(obj, spec)
        self.expected, self.expected_source = [], None
        explicit = config.getoption("--expected-failures")
        if explicit:
            if not Path(explicit).is_file():
                raise pytest.UsageError(f"--expected-failures {explicit!r}: no such file")
            self.expected, self.expected_source = read_expected_failures(Path(explicit)), explicit
        elif self.spec:
            name = implementation_name(next(iter(self.objects.values())), self.spec)
            for folder in EXPECTED_FAILURES_DIRS:
                own = folder / f"{name}.txt"
                if own.is_file():
                    self.expected, self.expected_source = read_expected_failures(own), str(own)
                    break
        self.timeout = float(config.getoption("--case-timeout") or 0)
        self.unmatched: list[str] = []


def _family_of(item) -> str | None:
    for marker in item.iter_markers():
        if marker.name in item.config._vsbench.families:
            return marker.name
    return None


def pytest_configure(config):
    config._vsbench = _Selection(config)
    if config._vsbench.expected:
        # Expected-failure lists are established with the derandomized `ci` profile; a random profile
        # could miss a failing example and report a spurious unexpected pass.
        from hypothesis import settings

        settings.load_profile("ci")


def pytest_report_header(config):
    sel = config._vsbench
    lines = ["vsbench implementation under test: " + ", ".join(f"{f}={n}" for f, n in sel.names.items())]
    if sel.expected_source:
        lines.append(f"vsbench expected failures: {len(sel.expected)} from {sel.expected_source}")
    return lines


def pytest_collection_modifyitems(config, items):
    sel = config._vsbench
    used, collected_files = set(), set()
    for item in items:
        family = _family_of(item)
        if family is None:
            continue
        fam = sel.families[family]
        case_id = case_key(item.nodeid)
        collected_files.add(case_id.split("::", 1)[0])
        if not provides_family(sel.objects[family], fam, sel.families):
            item.add_marker(pytest.mark.skip(reason=f"{sel.names[family]} provides no part of the {family} family"))
            continue
        hits = [e for e in sel.expected if matches(case_id, e)]
        used.update(hits)
        if hits:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"known failure of {sel.names[family]}"))
    cases_dir = Path(__file__).parent
    for entry in sel.expected:
        file = entry.split("::", 1)[0]
        if entry in used:
            continue
        if not (cases_dir / file).is_file():
            sel.unmatched.append(f"{entry} (no such case file in cases/)")
        elif file in collected_files:
            sel.unmatched.append(f"{entry} (no case of that name)")
    for problem in sel.unmatched:
        warnings.warn(pytest.PytestWarning(f"expected-failures entry matches no case: {problem}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    sel = getattr(config, "_vsbench", None)
    if sel is not None and sel.unmatched:
        terminalreporter.write_line(f"vsbench: {len(sel.unmatched)} expected-failures entries match no case "
                                    f"({sel.expected_source}): " + "; ".join(sel.unmatched), yellow=True)


class CaseTimeout(Exception):
    """A case ran past --case-timeout."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """The time limit of a case (SIGALRM in the main thread: it interrupts Python code and sleeps)."""
    sel = getattr(item.config, "_vsbench", None)
    seconds = sel.timeout if sel is not None and _family_of(item) else 0
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        if _CURRENT_PART["timed_out"] is None:
            part = _CURRENT_PART["name"]
            where = f" in part {part!r} of {sel.names[_family_of(item)]}" if part else ""
            _CURRENT_PART["timed_out"] = (f"case did not finish within {seconds:g} s{where} (a part that never "
                                          "returns? raise the limit with --case-timeout or VSBENCH_CASE_TIMEOUT)")
        raise CaseTimeout(_CURRENT_PART["timed_out"])

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # after the first alarm, keep interrupting (hypothesis replays a failing example to shrink it, and
    # every replay would hang again); part calls also fail at once from then on (see _bounded)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _CURRENT_PART.update(name=None, timed_out=None)


def case_meaning(item) -> tuple[str, str] | None:
    """(what the case stands for, the stage it tests) from its `pytest.mark.case(stands_for=..., stage=...)`
    marker (on the test, else on its module); None when the case carries none."""
    marker = item.get_closest_marker("case")
    if marker is None:
        return None
    stands_for = marker.kwargs.get("stands_for") or (marker.args[0] if marker.args else "")
    stage = marker.kwargs.get("stage") or (marker.args[1] if len(marker.args) > 1 else "")
    return str(stands_for), str(stage)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing case says which bug or invariant it stands for and which stage it tested; both are also
    recorded as properties (the `cases` benchmark lists them as "bugs found")."""
    outcome = yield
    report = outcome.get_result()
    meaning = case_meaning(item)
    if meaning is None or report.when != "call":
        return
    stands_for, stage = meaning
    report.user_properties.extend([("stands_for", stands_for), ("stage", stage)])
    if report.failed and not hasattr(report, "wasxfail"):
        if isinstance(report.longrepr, str):
            report.longrepr += f"\n[vsbench] stands for: {stands_for}; stage tested: {stage}"
        elif report.longrepr is not None and hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("vsbench case", f"stands for: {stands_for}\nstage tested: {stage}")


def outcome_of(report) -> str:
    """passed | failed | xfailed | xpassed | skipped, as the `cases` benchmark counts them."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed and "XPASS(strict)" in str(report.longrepr or ""):
        return "xpassed"
    return report.outcome


def pytest_runtest_logreport(report):
    """With VSBENCH_CASES_LOG set: one JSON line per finished case (setup errors and skips included)."""
    path = os.environ.get("VSBENCH_CASES_LOG")
    if not path or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    record = {"nodeid": report.nodeid, "case": case_key(report.nodeid), "outcome": outcome_of(report),
              "when": report.when, "duration_s": round(report.duration, 3),
              "properties": {k: str(v) for k, v in report.user_properties},
              "message": str(report.longrepr or "")[-600:] if report.failed else ""}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def impl(request):
    family = _family_of(request.node)
    if family is None:
        pytest.fail(f"{request.node.nodeid}: case module declares no family marker "
                    f"(one of {', '.join(request.config._vsbench.families)})")
    return request.config._vsbench.objects[family]


def _bounded(fn, part_name: str, impl_name: str, contract: str):
    """A part callable that says which part is running (for the timeout message) and fails the case
    clearly when it returns None while its contract promises a value."""
    promises_value = "->" in contract and not contract.split("->", 1)[1].strip().startswith("None")

    def call(*args, **kwargs):
        if _CURRENT_PART["timed_out"]:
            raise CaseTimeout(_CURRENT_PART["timed_out"])
        outer, _CURRENT_PART["name"] = _CURRENT_PART["name"], part_name
        try:
            result = fn(*args, **kwargs)
        finally:
            _CURRENT_PART["name"] = outer
        if result is None and promises_value:
            pytest.fail(f"part {part_name!r} of {impl_name} returned None; its contract: {contract}", pytrace=False)
        return result

    call.__wrapped__ = fn
    call.__name__ = getattr(fn, "__name__", part_name)
    return call


@pytest.fixture(scope="module")
def part(request, impl):
    """`part(name)` -> the implementation's attribute `name`, or fail this case naming what is missing."""
    family = _family_of(request.node)
    sel = request.config._vsbench
    name = sel.names[family]
    contracts = sel.families[family].parts

    def get(part_name: str):
        try:
            value = read_part(impl, part_name)
        except Exception as err:  # a property that raises: the part is broken, not the suite
            pytest.fail(f"implementation {name}: reading part {part_name!r} of the {family} family raised "
                        f"{type(err).__name__}: {err}", pytrace=False)
        if value is None:
            pytest.fail(f"implementation {name} lacks part {part_name!r} of the {family} family "
                        f"(required by this case)", pytrace=False)
        if inspect.isroutine(value):
            return _bounded(value, part_name, name, contracts.get(part_name, ""))
        return value

    return get


class PartView:
    """Attribute access to the implementation's parts; a missing part fails the case naming it."""

    def __init__(self, get_part, parts):
        self._get_part = get_part
        self._parts = parts

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._parts:
            raise AttributeError(f"{name!r} is not a part of this family (parts: {', '.join(self._parts)})")
        return self._get_part(name)


@pytest.fixture(scope="module")
def api(request, part):
    """`api.encode(...)`: the implementation under test, part by part."""
    family = request.config._vsbench.families[_family_of(request.node)]
    return PartView(part, family.parts)
