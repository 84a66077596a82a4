"""One bug never masks another: each known-bad replica having ONE behaviour fails exactly the cases of
its expected-failures list (cases/known_bad/expected_failures/port-bugN.txt and single/*.txt), every
listed case passes on the reference, and a published bug's cases (cases/test_bugN_*.py) fail on the
replica of that bug and on no other single-behaviour replica. Each replica runs in its own pytest
subprocess (`python -m pytest cases/... --impl SPEC --expected-failures LIST`, strict xfail).

The quick checks run the listed cases only; the exhaustive one (every case of the family on every
replica, ~40 subprocesses) runs when VSBENCH_ISOLATION_FULL=1 and is skipped, saying so, otherwise."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTS = ROOT / "cases" / "known_bad" / "expected_failures"
SINGLE = sorted([*(LISTS / "single").glob("*.txt"), *(LISTS / f"port-bug{n}.txt" for n in range(1, 5))])
MINE = sorted([*LISTS.glob("port-*.txt"), *LISTS.glob("pix2seqv2-*.txt"), *(LISTS / "single").glob("*.txt")])
FAMILY_FILES = {"pix2seq": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_bug*.py")) +
                sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_invariants_*.py")),
                "pix2seqv2": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_pix2seqv2_*.py"))}
BUG_VARIANTS = {"port-ndonly": 3}  # the public Pix2SeqV2's mirror image of bug 3 fails bug 3's container case
TIMEOUT_S = 1200


def read_list(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """(spec, [(case id, reason)]) of an expected-failures file."""
    spec, entries = "", []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# spec:"):
            spec = line.split(":", 1)[1].strip()
        case, _, reason = line.partition("#")
        if case.strip():
            entries.append((case.strip(), reason.strip()))
    return spec, entries


def family_of(entries) -> str:
    return "pix2seqv2" if all(c.startswith("test_pix2seqv2_") for c, _ in entries) else "pix2seq"


def run_cases(spec: str | None, targets: list[str], expected: Path | None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci-noshrink",
           "--tb=line", "-rfEX", *targets]
    if spec:
        cmd.append(f"--impl={spec}")
    if expected:
        cmd.append(f"--expected-failures={expected}")
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1", "VSBENCH_IMPL": ""}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)


def node(case_id: str) -> str:
    return f"cases/{case_id}"


def test_every_line_of_the_lists_names_a_case_and_a_reason():
    assert len(MINE) >= 30
    for path in MINE:
        spec, entries = read_list(path)
        assert spec, f"{path.name}: no '# spec: MODULE:OBJECT' line"
        assert entries, f"{path.name}: an empty list (a replica that fails nothing shows no bug)"
        for case, reason in entries:
            module, _, test = case.partition("::")
            assert f"def {test.split('[')[0]}(" in (ROOT / "cases" / module).read_text(), f"{path.name}: {case}"
            assert len(reason) > 10, f"{path.name}: {case} has no one-line reason"


def test_every_behaviour_has_a_single_replica_list():
    from cases.known_bad.pix2seqv2_public import V2_BUGS
    from cases.known_bad.port import ALL_BEHAVIOURS

    names = {p.stem for p in SINGLE}
    want = {f"port-{b}" for b in ALL_BEHAVIOURS if not isinstance(b, int)} | {f"pix2seqv2-{b}" for b in V2_BUGS}
    assert want <= names, sorted(want - names)
    assert {f"port-bug{n}" for n in range(1, 5)} <= names


def test_published_bug_cases_fail_on_their_bug_only():
    """A published bug's cases appear in that bug's list and in no other single-behaviour list."""
    for n in range(1, 5):
        _, entries = read_list(LISTS / f"port-bug{n}.txt")
        assert {c.split("::")[0] for c, _ in entries} == {Path(p).name for p in FAMILY_FILES["pix2seq"]
                                                           if Path(p).name.startswith(f"test_bug{n}_")}
    for path in SINGLE:
        for case, _ in read_list(path)[1]:
            bug = re.match(r"test_bug(\d)_", case)
            if bug:
                assert path.stem in (f"port-bug{bug.group(1)}",) or BUG_VARIANTS.get(path.stem) == int(bug.group(1)), \
                    f"{path.name} fails {case}: a published bug's case fails for another behaviour"


@pytest.mark.parametrize("path", SINGLE, ids=lambda p: p.stem)
def test_listed_cases_fail_on_their_replica(path):
    spec, entries = read_list(path)
    proc = run_cases(spec, [node(c) for c, _ in entries], path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "xfailed" in proc.stdout and " passed" not in proc.stdout.splitlines()[-1], proc.stdout[-1500:]


@pytest.mark.parametrize("family", sorted(FAMILY_FILES))
def test_listed_cases_pass_on_the_reference(family):
    listed = sorted({c for p in SINGLE for c, _ in read_list(p)[1] if family_of([(c, "")]) == family})
    proc = run_cases(None, [node(c) for c in listed], None)
    assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout[-3000:]


@pytest.mark.skipif(not os.environ.get("VSBENCH_ISOLATION_FULL"),
                    reason="exhaustive: every case of the family on every replica; set VSBENCH_ISOLATION_FULL=1")
@pytest.mark.parametrize("path", SINGLE + [LISTS / "port-replica.txt", LISTS / "pix2seqv2-public.txt"],
                         ids=lambda p: p.stem)
def test_each_replica_fails_exactly_its_list(path):
    spec, entries = read_list(path)
    families = {family_of([e]) for e in entries} if path.stem != "pix2seqv2-public" else set(FAMILY_FILES)
    targets = [f for fam in sorted(families) for f in FAMILY_FILES[fam]]
    proc = run_cases(spec, targets, path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
