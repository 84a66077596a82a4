"""The case suite against hostile implementations: a part that never returns, a part that raises when
read, a part returning None, a subclass of the reference, expected-failure lists written as pytest
prints ids; every wait bounded (cases/conftest.py, cases/interface)."""

import subprocess
import sys
import textwrap
import time

import pytest

from cases.interface import implementation_name

pytestmark = pytest.mark.slow

IMPL = textwrap.dedent('''
    import time
    from bench.implementations import Pix2SeqReference

    class Hung(Pix2SeqReference):
        name = "hung"
        def decode(self, tokens):
            while True:
                time.sleep(0.05)

    class RaisingProperty(Pix2SeqReference):
        name = "raising-property"
        @property
        def collate(self):
            raise RuntimeError("collate is broken")

    class ReturnsNone(Pix2SeqReference):
        name = "returns-none"
        def encode(self, boxes, labels, width, height):
            return None

    class Subclass(Pix2SeqReference):
        pass

    HUNG, RAISING, NONE, SUBCLASS = Hung(), RaisingProperty(), ReturnsNone(), Subclass()
''')


def run_cases(tmp_path, spec, *args, timeout=240):
    (tmp_path / "user_impl.py").write_text(IMPL)
    env = {"VSBENCH_IMPL_PATH": str(tmp_path), "HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--impl=user_impl:{spec}",
                           *args], capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.monotonic() - start


def test_a_part_that_never_returns_times_out_naming_the_part_and_the_suite_goes_on(tmp_path):
    proc, seconds = run_cases(tmp_path, "HUNG", "cases/test_invariants_tokenizer.py", "--case-timeout", "3")
    out = proc.stdout
    assert proc.returncode == 1, out[-2000:]
    assert "did not finish within 3 s in part 'decode' of hung" in out
    assert " passed" in out.splitlines()[-1]  # the cases that do not need decode ran and passed
    assert seconds < 300


def test_a_part_that_raises_when_read_fails_only_the_cases_needing_it(tmp_path):
    proc, _ = run_cases(tmp_path, "RAISING", "cases/test_bug1_object_cap_vs_sequence_length.py",
                        "cases/test_invariants_tokenizer.py")
    out = proc.stdout
    assert proc.returncode == 1 and "error" not in out.splitlines()[-1], out[-2000:]  # no collection error
    assert "reading part 'collate' of the pix2seq family raised RuntimeError: collate is broken" in out
    assert " passed" in out.splitlines()[-1]


def test_a_part_returning_none_names_the_part_and_its_contract(tmp_path):
    proc, _ = run_cases(tmp_path, "NONE", "cases/test_invariants_tokenizer.py")
    assert proc.returncode == 1
    assert "part 'encode' of returns-none returned None; its contract: encode(" in proc.stdout


def test_a_subclass_of_the_reference_is_named_by_its_spec_not_reference():
    from bench.implementations import PIX2SEQ, Pix2SeqReference

    class Mine(Pix2SeqReference):
        pass

    assert implementation_name(PIX2SEQ, "bench.implementations:PIX2SEQ") == "reference"
    assert implementation_name(Mine(), "my_impl:MINE") == "my_impl:MINE"
    named = Mine()
    named.name = "mine"
    assert implementation_name(named, "my_impl:MINE") == "mine"


def test_expected_failures_accept_pytest_ids_and_warn_about_entries_matching_nothing(tmp_path):
    listing = tmp_path / "expected.txt"
    listing.write_text(
        "cases/test_bug2_empty_detection.py::test_bos_eos_row_is_an_empty_detection  # as pytest prints it\n"
        "test_bug2_empty_detection.py::test_mixed_empty_and_nonempty_batch_keeps_every_image  # relative form\n"
        "test_bug2_empty_detection.py::test_one_empty_row_does_not_change_the_others\n"
        "test_bug2_empty_detection.py::test_no_such_case  # a typo\n"
        "test_no_such_file.py::test_x\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rxX",
                           "--impl=cases.known_bad.port:PORT_BUG2", f"--expected-failures={listing}",
                           "cases/test_bug2_empty_detection.py"], capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-2000:]
    assert out.count("XFAIL") >= 3
    assert "test_bug2_empty_detection.py::test_no_such_case (no case of that name)" in out
    assert "test_no_such_file.py::test_x (no such case file in cases/)" in out


def test_an_impl_module_in_the_users_folder_is_found(tmp_path, monkeypatch):
    from bench.plugins import load_object

    (tmp_path / "my_own_pipeline.py").write_text("from bench.implementations import PIX2SEQ as OBJ\n")
    monkeypatch.setenv("VSBENCH_IMPL_PATH", str(tmp_path))
    assert load_object("my_own_pipeline:OBJ").num_bins == 384


def test_a_part_name_several_families_declare_does_not_make_an_implementation_of_each():
    """`generate` is a part of pix2seq, qformer and blip2-stage2: a Pix2Seq object is not a Q-Former."""
    from cases.interface import families, load_implementation, provides_family

    every = families()
    port = load_implementation("cases.known_bad.port:PORT_BUG1")
    assert provides_family(port, every["pix2seq"], every)
    assert not provides_family(port, every["qformer"], every) and not provides_family(port, every["blip2-stage2"], every)

    class OnlyShared:
        generate = build = staticmethod(lambda *a, **k: None)

    assert not any(provides_family(OnlyShared(), fam, every) for fam in every.values())
    for fam in every.values():  # every reference implements its own family
        assert provides_family(load_implementation(fam.reference_spec), fam, every), fam.name
