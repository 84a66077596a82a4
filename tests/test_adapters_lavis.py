"""The real LAVIS adapter (cases/adapters/lavis.py), run in its own environment (`tox -e lavis`; skipped where
salesforce-lavis is not installed). Also checks, on LAVIS's own functions, the two behaviours the case interface
cannot reach there: compute_sim_matrix's unclipped topk(k_test), and the generation cache that is never used."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cases.interface import families, provided_parts
from cases.interface.qformer import TINY_CONFIG, random_batch

pytest.importorskip("lavis")
from cases.adapters.lavis import LAVIS  # noqa: E402
from lavis.models.blip2_models.blip2 import compute_sim_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LISTED = ROOT / "cases" / "adapters" / "expected_failures" / "lavis.txt"
PROVIDED = {"build", "query_pass", "text_pass", "itm_pass", "itg_logits", "losses", "gather_features", "generate"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LAVIS.build(TINY_CONFIG)


def test_lavis_adapter_provides_exactly_the_parts_it_claims():
    assert provided_parts(LAVIS, families()["qformer"]) == PROVIDED


class Texts:
    """compute_sim_matrix slices `dataset.text` and tokenizes each slice; the pass-through tokenizer takes ids."""

    def __init__(self, ids, mask):
        self.ids, self.mask = ids, mask

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, s):
        return self.ids[s], self.mask[s]


class Loader:
    def __init__(self, images, ids, mask):
        self.images = images
        self.dataset = type("Dataset", (), {"text": Texts(ids, mask), "image": list(range(len(images)))})()

    def __iter__(self):
        yield {"image": self.images}


def test_compute_sim_matrix_raises_when_k_test_exceeds_the_candidates(model):
    images, _, _ = random_batch(TINY_CONFIG, 3, 8, seed=1)
    _, ids, mask = random_batch(TINY_CONFIG, 4, 8, seed=2)
    loader = Loader(images, ids, mask)
    with torch.no_grad():
        i2t, t2i = compute_sim_matrix(model, loader, k_test=3)  # k within both galleries: runs
        assert i2t.shape == (3, 4) and t2i.shape == (4, 3)
        with pytest.raises(RuntimeError, match="out of range"):
            compute_sim_matrix(model, loader, k_test=4)  # 4 texts, but only 3 images for each text


def test_generation_never_passes_the_cache_back(model):
    seen = []
    model.Qformer.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append((kwargs.get("past_key_values"), kwargs["input_ids"].shape[1])),
        with_kwargs=True)
    LAVIS.generate(model, torch.randn(2, 6, TINY_CONFIG["image_width"]), num_beams=1, max_length=5, min_length=5)
    assert [length for _, length in seen] == [1, 2, 3, 4, 5]  # the whole text again at every step ...
    assert all(past is None for past, _ in seen)  # ... because past_key_values never comes back


@pytest.mark.slow
def test_lavis_adapter_fails_exactly_its_list():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                           *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_qformer_*.py")),
                           "--impl=cases.adapters.lavis:LAVIS", f"--expected-failures={LISTED}"],
                          cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci-noshrink", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
