"""The recorded ITM ablation (bench/checkpoints/qformer_itm_ablation.json) is what the measurement gives: the
shipped checkpoint, measured again, reproduces its row; record_variant stores a measurement under its name."""

import json

import pytest

from bench.training.itm_ablation import RECORD, measure, record_variant
from bench.training.qformer import CHECKPOINT

SHIPPED_ROW = "6 fine-tune of 4, half hard, ITM x3 (shipped now)"


@pytest.mark.skipif(not (CHECKPOINT.is_file() and RECORD.is_file()), reason="shipped checkpoint / record not present")
def test_the_shipped_checkpoint_reproduces_its_recorded_row():
    recorded = json.loads(RECORD.read_text())["variants"][SHIPPED_ROW]
    assert recorded["command"] == json.loads(CHECKPOINT.with_suffix(".json").read_text())["command"]
    live = measure(CHECKPOINT)
    for key, value in recorded["measured"].items():
        if isinstance(value, float) and key.startswith(("itm", "itc", "auc")):
            assert live[key] == pytest.approx(value, abs=1e-4), key


def test_record_variant_adds_one_named_row(tmp_path):
    ckpt = tmp_path / "x.safetensors"
    ckpt.with_suffix(".json").write_text(json.dumps({"command": "vsbench train-qformer --steps 3"}))
    path = tmp_path / "record.json"
    record_variant("a", {"checkpoint": str(ckpt), "itc_i2t_R@1": 12.5}, path)
    record_variant("b", {"checkpoint": str(ckpt), "itc_i2t_R@1": 7.0}, path)
    variants = json.loads(path.read_text())["variants"]
    assert variants == {"a": {"command": "vsbench train-qformer --steps 3", "measured": {"itc_i2t_R@1": 12.5}},
                        "b": {"command": "vsbench train-qformer --steps 3", "measured": {"itc_i2t_R@1": 7.0}}}
