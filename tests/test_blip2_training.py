"""The tiny Q-Former's training loop, checkpoint round trip and the shipped checkpoint."""

import json

import pytest
import torch

from bench.datasets.synthetic import SyntheticConfig, generate_dataset
from bench.training.qformer import CHECKPOINT, TrainConfig, load_checkpoint, load_split, lr_at, train
from reference.blip2.captioner import generate
from reference.blip2.image_encoder import PatchEncoderConfig


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("shapes"), SyntheticConfig(num_train=12, num_val=4))


def test_train_save_load_round_trip(tiny_dataset, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=4, hidden_size=32, num_layers=2, intermediate_size=48, num_query_tokens=4,
                      embed_dim=16, encoder=PatchEncoderConfig(width=32))
    out = tmp_path / "q.safetensors"
    meta = train(cfg, out=out, command="test", log_every=0, dataset=tiny_dataset)
    assert meta["dataset_fingerprint"] == tiny_dataset.fingerprint and meta["train_images"] == 12
    assert all(torch.isfinite(torch.tensor(v)) for v in meta["metrics_at_save"].values())
    model, encoder, tokenizer, loaded_meta = load_checkpoint(out)
    assert loaded_meta == json.loads(out.with_suffix(".json").read_text())
    val = load_split(tiny_dataset, "val", encoder)
    assert val.features.shape == (4, 64, 32) and len(val.captions) == 4
    again = load_checkpoint(out)[0]
    tokens = generate(model, val.features, num_beams=2, max_length=6, min_length=1)
    assert torch.equal(tokens, generate(again, val.features, num_beams=2, max_length=6, min_length=1))
    assert all(isinstance(tokenizer.decode(row), str) for row in tokens.tolist())


def test_training_is_reproducible_from_its_seed(tiny_dataset, tmp_path):
    from safetensors.torch import load_file

    cfg = TrainConfig(steps=2, batch_size=4, hidden_size=32, num_layers=2, intermediate_size=48, num_query_tokens=4,
                      embed_dim=16, encoder=PatchEncoderConfig(width=32))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(cfg, out=a, log_every=0, dataset=tiny_dataset)
    train(cfg, out=b, log_every=0, dataset=tiny_dataset)
    sa, sb = load_file(str(a)), load_file(str(b))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) < 0.01 and all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="shipped checkpoint not present")
def test_shipped_checkpoint_is_small_and_documented():
    assert CHECKPOINT.stat().st_size <= 10 * 2**20
    meta = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    for key in ("command", "seed", "train_config", "model_config", "vocab", "metrics_at_save", "dataset_fingerprint"):
        assert key in meta
    model, encoder, tokenizer, _ = load_checkpoint(CHECKPOINT)
    assert sum(p.numel() for p in encoder.parameters()) == 0
    images = torch.zeros(2, 128, 128, 3, dtype=torch.uint8)
    images[0, 40:80, 40:80] = torch.tensor([220, 30, 30], dtype=torch.uint8)
    out = generate(model, encoder(images), num_beams=3, max_length=21, min_length=3)
    assert out.shape[0] == 2
