"""`vsbench adapter FAMILY`: the template imports, names itself, stubs every part of the family (constants
None, methods raising NotImplementedError naming the part), and `pytest cases/ --impl` on it fails each
case naming the missing part instead of crashing collection."""

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.adapter import family_contracts, signature_of, template

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path, family):
    path = tmp_path / f"impl_{family}.py"
    path.write_text(template(family), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"impl_{family}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


@pytest.mark.parametrize("family", sorted(family_contracts()))
def test_template_stubs_every_part_and_names_itself(tmp_path, family):
    module, _ = load(tmp_path, family)
    impl = module.IMPL
    assert impl.name == "my-impl"
    fam, _ = family_contracts()[family]
    for part, contract in fam.parts.items():
        assert hasattr(type(impl), part), part
        if signature_of(part, contract) is None:
            assert getattr(impl, part) is None, part
        else:
            method = getattr(impl, part)
            assert contract.split(" ->")[0] in " ".join(method.__doc__.split()), part
            with pytest.raises(NotImplementedError, match=f"part '{part}' of the {family} family"):
                method(*[None] * (method.__code__.co_argcount - 1))


def test_signature_of_drops_shapes_and_keeps_defaults():
    assert signature_of("postprocess", "postprocess(tokens (B,T) long, token_probs (B,T) float, sizes [(w,h)]*B) -> x") \
        == "self, tokens, token_probs, sizes"
    assert signature_of("prompt", "prompt(task, box=None, label=None, width=1, height=1) -> list[int]") \
        == "self, task, box=None, label=None, width=1, height=1"
    assert signature_of("num_bins", "int: number of coordinate bins") is None


def test_command_prints_the_template_and_refuses_an_unknown_family():
    proc = subprocess.run([sys.executable, "-m", "bench", "adapter", "pix2seqv2"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout == template("pix2seqv2")
    proc = subprocess.run([sys.executable, "-m", "bench", "adapter", "pix3seq"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == (
        "vsbench adapter: unknown family 'pix3seq'; families: albef, blip, blip2-stage2, pix2seq, pix2seqv2, pyramid, "
        "qformer\n")


@pytest.mark.parametrize("family, cases", [("pix2seq", ["cases/test_bug1_object_cap_vs_sequence_length.py",
                                                        "cases/test_invariants_generate.py"]),
                                           ("pix2seqv2", ["cases/test_pix2seqv2_tasks.py",
                                                          "cases/test_pix2seqv2_results.py"])])
def test_cases_on_the_template_fail_naming_the_missing_part(tmp_path, family, cases):
    _, path = load(tmp_path, family)
    junit = tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--impl={path.stem}:IMPL",
                           f"--junitxml={junit}", *cases], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci",
                               "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # failures, not a collection error
    assert f"{family}=my-impl" in proc.stdout  # the report header names the implementation
    failures = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        problems = [c for c in case if c.tag in ("failure", "error")]
        assert problems, f"{case.get('name')} passed on a stub"
        text = " ".join((p.get("message") or "") + (p.text or "") for p in problems)
        assert "lacks part '" in text or "of the " + family + " family is not implemented" in text, text[-800:]
        assert "stands for:" in text and "stage tested:" in text, text[-800:]
        failures += 1
    assert failures >= 5


def test_the_cli_builds_without_a_checkout(monkeypatch):
    """An installed vsbench run outside a checkout has no cases/: every command still parses (the adapter help
    then names no families)."""
    import argparse

    import bench.adapter
    from bench import cli

    monkeypatch.setattr(bench.adapter, "repo_root", lambda: None)
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["adapter"]
    family = next(a for a in sub._actions if a.dest == "family")
    assert "checkout" in family.help
    assert parser.parse_args(["list"]).command == "list"
