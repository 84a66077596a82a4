"""The pluggable case suite: --impl selection, missing parts, families, strict expected failures,
and the cases benchmark's outcome log, suite timeout and bugs-found list. Runs pytest in a subprocess on small case selections."""

import subprocess
import sys
from pathlib import Path

from bench.benchmarks.cases import bugs_found, read_case_log, registered_implementations, run_suite

ROOT = Path(__file__).resolve().parent.parent


def pytest_cases(*args, env_impl=None):
    env = {"HYPOTHESIS_PROFILE": "ci", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    if env_impl:
        env["VSBENCH_IMPL"] = env_impl
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, env=env)


CASE = "cases/test_bug2_empty_detection.py::test_bos_eos_row_is_an_empty_detection"


def test_a_missing_part_fails_only_the_cases_that_need_it(tmp_path):
    module = tmp_path / "partial_impl.py"
    module.write_text("from bench.implementations import PIX2SEQ as _R\n"
                      "class Partial:\n    name = 'partial'\n"
                      "    num_bins, num_classes, max_len = 384, 20, 300\n"
                      "    bos, eos, pad = 404, 405, 406\n    encode = staticmethod(_R.encode)\n"
                      "IMPL = Partial()\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--impl=partial_impl:IMPL",
                           "cases/test_bug1_object_cap_vs_sequence_length.py"], cwd=ROOT, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci"})
    out = proc.stdout
    assert "lacks part 'collate'" in out
    assert "test_encoded_length_fits_sequence_length PASSED" in out or "1 passed" in out or "passed" in out
    assert "1 failed, 2 passed" in out  # collate is missing; encode and the reference do the rest


def test_env_variable_selects_the_implementation_and_strict_xfail_flags_a_fix():
    # port-bug2 fails this case: with its expected-failures file it is an expected failure ...
    proc = pytest_cases(CASE, "--impl=cases.known_bad.port:PORT_BUG2")
    assert proc.returncode == 0 and "1 xfailed" in proc.stdout
    # ... and the reference, run with port-bug2's list, is an unexpected pass = failure (strict)
    listed = ROOT / "cases" / "known_bad" / "expected_failures" / "port-bug2.txt"
    proc = pytest_cases(CASE, f"--expected-failures={listed}", env_impl="bench.implementations:PIX2SEQ")
    assert proc.returncode == 1 and "XPASS(strict)" in proc.stdout


def test_unloadable_impl_is_a_usage_error():
    proc = pytest_cases(CASE, "--impl=no_such_module_abc:X")
    assert proc.returncode == 4 and "cannot import module 'no_such_module_abc'" in proc.stderr


def test_every_expected_failures_file_names_a_loadable_spec_and_existing_cases():
    impls = registered_implementations(ROOT, [])
    assert impls[0][0] == "reference"
    for name, spec, expected in impls[1:]:
        assert spec and expected, name
        for case_id in expected:
            module, _, test = case_id.partition("::")
            assert f"def {test.split('[')[0]}(" in (ROOT / "cases" / module).read_text(), case_id  # [param] ids too


def test_suite_run_reports_outcomes_per_case():
    run = run_suite(ROOT, "port-bug2", "cases.known_bad.port:PORT_BUG2", [])
    assert run.outcomes["test_bug2_empty_detection.py::test_bos_eos_row_is_an_empty_detection"] == "xfailed"
    assert run.outcomes["test_bug1_object_cap_vs_sequence_length.py::test_collate_cuts_a_too_long_sequence_to_whole_objects"] == "passed"


def test_case_log_outcomes_survive_a_cut_last_line(tmp_path):
    import json

    log = tmp_path / "cases.jsonl"
    records = [("test_a.py::test_ok", "call", "passed", {}), ("test_a.py::test_x", "call", "xfailed",
               {"stands_for": "bug 2", "stage": "postprocess"}), ("test_a.py::test_f", "setup", "failed", {}),
               ("test_a.py::test_xp", "call", "xpassed", {})]
    log.write_text("".join(json.dumps({"case": c, "when": w, "outcome": o, "properties": p, "message": "m"}) + "\n"
                           for c, w, o, p in records) + '{"case": "test_a.py::test_cut", "wh')
    outcomes, props, messages = read_case_log(log)
    assert outcomes == {"test_a.py::test_ok": "passed", "test_a.py::test_x": "xfailed", "test_a.py::test_f": "failed",
                        "test_a.py::test_xp": "xpassed"}
    assert props == {"test_a.py::test_x": {"stands_for": "bug 2", "stage": "postprocess"}}


def test_a_suite_past_its_time_limit_keeps_the_cases_that_finished(tmp_path, monkeypatch):
    (tmp_path / "slow_impl.py").write_text(
        "import time\nfrom bench.implementations import Pix2SeqReference\n"
        "class Slow(Pix2SeqReference):\n    name = 'slow'\n"
        "    def decode(self, tokens):\n        time.sleep(3600)\nSLOW = Slow()\n")
    monkeypatch.setenv("VSBENCH_IMPL_PATH", str(tmp_path))
    monkeypatch.setenv("VSBENCH_SUITE_TIMEOUT", "25")
    monkeypatch.setenv("VSBENCH_CASE_TIMEOUT", "0")  # only the suite limit applies
    monkeypatch.setenv("VSBENCH_CASES_ARGS", "cases/test_bug1_object_cap_vs_sequence_length.py cases/test_invariants_tokenizer.py")
    run = run_suite(ROOT, "slow", "slow_impl:SLOW", [])
    assert run.timed_out and 20 < run.seconds < 120
    bug1 = [k for k in run.outcomes if k.startswith("test_bug1_object_cap_vs_sequence_length.py::")]
    assert len(bug1) == 3 and all(run.outcomes[k] == "passed" for k in bug1)  # none of them decodes
    assert run.outcomes.get("test_invariants_tokenizer.py::test_decode_reads_a_reference_sequence_exactly") != "passed"


def test_bugs_found_lists_each_failing_case_with_what_it_stands_for():
    run = run_suite(ROOT, "port-bug2", "cases.known_bad.port:PORT_BUG2", [])
    lines = bugs_found(run)
    assert any(line.startswith("`bug2_empty_detection.py::test_bos_eos_row_is_an_empty_detection`") for line in lines)
