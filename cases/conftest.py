"""Plugin of the regression cases: --impl / VSBENCH_IMPL selects the implementation under test.

Fixtures: `impl` (the object under test for the case's family) and `part` (`part("encode")` returns
that attribute or fails the case naming the missing part). Each case module declares its family with
`pytestmark = pytest.mark.<family>`. Known failures listed for the implementation run as strict xfail,
so a fixed bug shows up as an unexpected pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.testing import load_hypothesis_profile
from cases.interface import (ImplementationError, families, implementation_name, load_implementation,
                             provided_parts)

load_hypothesis_profile()
EXPECTED_FAILURES_DIR = Path(__file__).parent / "known_bad" / "expected_failures"


def pytest_addoption(parser):
    group = parser.getgroup("vsbench")
    group.addoption("--impl", default=os.environ.get("VSBENCH_IMPL", ""), metavar="MODULE:OBJECT",
                    help="implementation under test (default: each family's reference); env VSBENCH_IMPL")
    group.addoption("--expected-failures", default=os.environ.get("VSBENCH_EXPECTED_FAILURES", ""),
                    metavar="FILE", help="file of case ids expected to fail (strict xfail) for --impl")


def read_expected_failures(path: Path) -> list[str]:
    """Lines of an expected-failures file: case id prefixes (`file.py::test`), '#' comments."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


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
        self.expected = []
        explicit = config.getoption("--expected-failures")
        if explicit:
            if not Path(explicit).is_file():
                raise pytest.UsageError(f"--expected-failures {explicit!r}: no such file")
            self.expected = read_expected_failures(Path(explicit))
        elif self.spec:
            own = EXPECTED_FAILURES_DIR / f"{implementation_name(next(iter(self.objects.values())), self.spec)}.txt"
            if own.is_file():
                self.expected = read_expected_failures(own)


def _family_of(item) -> str | None:
    for marker in item.iter_markers():
        if marker.name in item.config._vsbench.families:
            return marker.name
    return None


def pytest_configure(config):
    config._vsbench = _Selection(config)
    if config._vsbench.expected:
        # Expected-failure lists are established with the derandomized `ci` profile; a random profile
        # could miss a failing example and report a spurious unexpected pass. No shrinking: the
        # failures are expected, their minimal examples are not needed.
        from hypothesis import settings

        settings.load_profile("ci")


def pytest_report_header(config):
    sel = config._vsbench
    return "vsbench implementation under test: " + ", ".join(f"{f}={n}" for f, n in sel.names.items())


def pytest_collection_modifyitems(config, items):
    sel = config._vsbench
    for item in items:
        family = _family_of(item)
        if family is None:
            continue
        fam = sel.families[family]
        if not provided_parts(sel.objects[family], fam):
            item.add_marker(pytest.mark.skip(
                reason=f"{sel.names[family]} provides no part of the {family} family"))
            continue
        case_id = item.nodeid.split("cases/", 1)[-1]
        if any(case_id == e or case_id.startswith(e + "[") or case_id.startswith(e + "::") for e in sel.expected):
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"known failure of {sel.names[family]}"))


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
    recorded as junit properties (the `cases` benchmark lists them as "bugs found")."""
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


@pytest.fixture(scope="module")
def impl(request):
    family = _family_of(request.node)
    if family is None:
        pytest.fail(f"{request.node.nodeid}: case module declares no family marker "
                    f"(one of {', '.join(request.config._vsbench.families)})")
    return request.config._vsbench.objects[family]


@pytest.fixture(scope="module")
def part(request, impl):
    """`part(name)` -> the implementation's attribute `name`, or fail this case naming what is missing."""
    family = _family_of(request.node)
    name = request.config._vsbench.names[family]

    def get(part_name: str):
        value = getattr(impl, part_name, None)
        if value is None:
            pytest.fail(f"implementation {name} lacks part {part_name!r} of the {family} family "
                        f"(required by this case)", pytrace=False)
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
