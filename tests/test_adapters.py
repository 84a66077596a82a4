"""The real-peer adapters (cases/adapters/): they import, provide the parts they claim, list every case they fail
with a reason, and the transformers adapter computes what the reference computes when both hold the same weights
(so the cases it passes are passed by transformers' own code, not by an adapter that drifted)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cases.interface import families, provided_parts
from cases.interface.qformer import TINY_CONFIG, random_batch
from reference.blip2.api import REFERENCE
from reference.blip2.convert import import_stage1_from_hf

pytest.importorskip("transformers")
from cases.adapters.transformers_blip2 import TRANSFORMERS_BLIP2  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LISTED = ROOT / "cases" / "adapters" / "expected_failures" / "transformers-blip2.txt"
QFORMER = families()["qformer"]
PROVIDED = {"build", "query_pass", "text_pass", "itm_pass", "itm_logits", "itc_scores"}


def listed(path):
    """case id -> reason, from an expected-failures file."""
    out = {}
    for line in path.read_text().splitlines():
        case, _, reason = line.partition("#")
        if case.strip():
            out[case.strip()] = reason.strip()
    return out


def test_transformers_adapter_provides_exactly_the_parts_it_claims():
    assert provided_parts(TRANSFORMERS_BLIP2, QFORMER) == PROVIDED


def test_every_listed_failure_names_a_part_transformers_lacks():
    missing = set(QFORMER.parts) - PROVIDED
    lines = listed(LISTED)
    assert LISTED.read_text().startswith("# spec: cases.adapters.transformers_blip2:TRANSFORMERS_BLIP2\n")
    for case, reason in lines.items():
        assert reason.startswith("part not provided by transformers ("), case
        assert reason[len("part not provided by transformers ("):-1] in missing, case


@pytest.fixture(scope="module")
def twins():
    """The adapter's model and a reference Blip2Stage1 holding the same weights (imported from transformers)."""
    torch.manual_seed(0)
    theirs = TRANSFORMERS_BLIP2.build(TINY_CONFIG)
    ours = REFERENCE.build(TINY_CONFIG)
    result = ours.load_state_dict(import_stage1_from_hf(theirs.state_dict()), strict=False)
    assert not result.unexpected_keys
    assert {k.split(".")[0] for k in result.missing_keys} <= {"lm_head", "temp"}  # transformers has no ITG head
    return theirs, ours


@pytest.mark.parametrize("part", sorted(PROVIDED - {"build"}))
def test_transformers_parts_equal_the_reference_with_the_same_weights(twins, part):
    theirs, ours = twins
    images, ids, mask = random_batch(TINY_CONFIG, 3, 9, seed=5)
    args = {"query_pass": (images,), "text_pass": (ids, mask)}.get(part, (images, ids, mask))
    with torch.no_grad():
        a = getattr(TRANSFORMERS_BLIP2, part)(theirs, *args)
        b = getattr(REFERENCE, part)(ours, *args)
    if part == "text_pass":  # padded positions are free to differ: compare the real tokens
        a, b = a[mask.bool()], b[mask.bool()]
    torch.testing.assert_close(a.float(), b.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_transformers_adapter_fails_exactly_its_list():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_qformer_*.py")),
                           "--impl=cases.adapters.transformers_blip2:TRANSFORMERS_BLIP2", f"--expected-failures={LISTED}"],
                          cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci-noshrink", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]  # strict: every listed case failed, no other case did
    assert " passed" in proc.stdout and " xfailed" in proc.stdout
