"""Detection training: the loss falls on a tiny problem, an interrupted run resumes to the same weights,
the schedule and the augmentation do what they say."""

import numpy as np
import pytest
import torch

from bench.training.detection import (TrainConfig, augmented_sequences, lr_at, train, training_batch)
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
from reference.pix2seq.tokenizer import decode_sequence
from reference.vision.vit import ViTConfig


class ToyData:
    """8 images of 32 px, each with one or two coloured squares: the DetectionData interface."""

    def __init__(self, n: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.images = np.zeros((n, 32, 32, 3), np.uint8)
        self.targets = []
        for i in range(n):
            boxes, labels = [], []
            for k in range(1 + i % 2):
                x, y = rng.integers(0, 20, 2)
                label = int(rng.integers(0, 2))
                self.images[i, y:y + 10, x:x + 10, label] = 255
                boxes.append([x, y, x + 10, y + 10])
                labels.append(label)
            self.targets.append({"boxes": np.array(boxes, np.float32), "labels": np.array(labels, np.int64),
                                 "width": 32, "height": 32, "image_id": i + 1})

    def __len__(self) -> int:
        return len(self.targets)


def toy_model(seed: int = 0) -> Pix2Seq:
    torch.manual_seed(seed)
    cfg = Pix2SeqConfig(encoder=ViTConfig(image_size=32, patch_size=8, dim=32, depth=1, heads=2), dim=32,
                        decoder_layers=1, decoder_heads=2, decoder_ff=64, num_bins=32, num_classes=2, max_len=17)
    return Pix2Seq(cfg)


def test_loss_decreases(tmp_path):
    model, data = toy_model(), ToyData()
    cfg = TrainConfig(epochs=25, batch_size=8, lr=3e-3, warmup_steps=3, seed=0)
    history = train(model, data, cfg, tmp_path, torch.device("cpu"), log=lambda _: None, progress=False)["losses"]
    assert len(history) == 25
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3])
    assert not model.training and (tmp_path / "last.pt").is_file()


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, warmup_steps=2, seed=1)
    whole = toy_model()
    train(whole, ToyData(), cfg, tmp_path / "a", torch.device("cpu"), log=lambda _: None, progress=False)
    part = toy_model()
    train(part, ToyData(), cfg, tmp_path / "b", torch.device("cpu"), max_steps=3, log=lambda _: None,
          progress=False)  # stops inside epoch 2: only epoch 1 is saved
    resumed = toy_model(seed=5)  # different init: everything must come from last.pt
    lines = []
    summary = train(resumed, ToyData(), cfg, tmp_path / "b", torch.device("cpu"), resume=True, log=lines.append,
                    progress=False)
    assert any("resumed" in line and "epoch 1" in line for line in lines)
    assert summary["steps"] == 6 and len(summary["losses"]) == 3
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_refuses_another_config(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_steps=1)
    train(toy_model(), ToyData(), cfg, tmp_path, torch.device("cpu"), log=lambda _: None, progress=False)
    with pytest.raises(ValueError, match="another train or model config"):
        train(toy_model(), ToyData(), TrainConfig(epochs=2, batch_size=8, warmup_steps=1), tmp_path,
              torch.device("cpu"), resume=True, log=lambda _: None, progress=False)


def test_learning_rate_schedule_by_hand():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0)
    assert lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(110, 110, cfg) == pytest.approx(0.0)


def test_augmented_sequences_keep_the_objects():
    model, data = toy_model(), ToyData()
    cfg = TrainConfig(hflip=1.0)
    images, sequences = augmented_sequences(model, data, np.arange(8), cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(images, data.images[:, :, ::-1])  # every image flipped
    for seq, target in zip(sequences, data.targets):
        boxes, labels = decode_sequence(model.vocab, seq)
        flipped = np.stack([32 - target["boxes"][:, 2], target["boxes"][:, 1], 32 - target["boxes"][:, 0],
                            target["boxes"][:, 3]], 1) / 32
        got = sorted(zip(labels.tolist(), np.round(boxes * 31).tolist()))
        want = sorted(zip(target["labels"].tolist(), np.floor(flipped * 31 + 0.5).tolist()))
        assert got == want
    x, inputs, targets = training_batch(model, images, sequences, torch.device("cpu"))
    assert x.shape == (8, 3, 32, 32) and inputs.shape == targets.shape == (8, 11)  # longest: BOS + 2 objects + EOS = 12, minus 1
    assert torch.equal(inputs[:, 1:], targets[:, :-1])


def test_object_orders_by_hand():
    from bench.training.detection import object_order

    boxes = np.array([[50, 10, 60, 20], [5, 30, 9, 40], [1, 10, 4, 12]], np.float64)
    rng = np.random.default_rng(0)
    assert object_order(boxes, "raster", rng).tolist() == [2, 0, 1]  # ymin 10 (x 1), ymin 10 (x 50), ymin 30
    assert object_order(boxes, "given", rng).tolist() == [0, 1, 2]
    assert sorted(object_order(boxes, "random", rng).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="order"):
        object_order(boxes, "area", rng)


def test_train_detection_command_is_registered():
    from bench.cli import build_parser

    args = build_parser().parse_args(["train", "detection", "--epochs", "2", "--order", "raster", "--resume"])
    assert (args.command, args.task, args.epochs, args.order, args.resume) == ("train", "detection", 2, "raster", True)


def test_scale_and_place_by_hand():
    """A 100 x 80 image with a white 20 x 20 square at (10, 20): halved and placed at (30, 5) the square
    covers x 35..45, y 15..25; doubled and shifted by (-40, -30) it covers x -20..20, y 10..50 of which
    x 0..20 is left (half: kept at min_visible 0.5, dropped at 0.6)."""
    from bench.training.detection import scale_and_place

    image = np.zeros((80, 100, 3), np.uint8)
    image[20:40, 10:30] = 255
    boxes, labels = np.array([[10.0, 20.0, 30.0, 40.0]]), np.array([2])
    small, b, lab = scale_and_place(image, boxes, labels, 0.5, (30, 5))
    assert small.shape == image.shape and b.tolist() == [[35.0, 15.0, 45.0, 25.0]] and lab.tolist() == [2]
    assert small[16:24, 36:44].min() == 255 and small[:5].max() < 255  # square moved; padding is the mean colour
    big, b, lab = scale_and_place(image, boxes, labels, 2.0, (-40, -30))
    assert b.tolist() == [[0.0, 10.0, 20.0, 50.0]] and lab.tolist() == [2]
    assert big[12:48, 0:18].min() == 255 and big[:, 22:].max() == 0
    _, b, lab = scale_and_place(image, boxes, labels, 2.0, (-40, -30), min_visible=0.6)
    assert b.shape == (0, 4) and lab.tolist() == []


def test_scale_jitter_keeps_boxes_inside_and_on_their_objects():
    """Generated images through random scale jitter: every kept box lies in the image and its centre
    pixel still shows a non-background colour where the original centre did."""
    from bench.training.detection import scale_and_place

    rng = np.random.default_rng(0)
    for _ in range(30):
        image = np.full((64, 64, 3), 40, np.uint8)
        x0, y0 = rng.integers(0, 40, size=2)
        image[y0:y0 + 20, x0:x0 + 20] = 220
        boxes = np.array([[x0, y0, x0 + 20, y0 + 20]], np.float64)
        scale = rng.uniform(0.5, 1.5)
        spare = [64 - round(64 * scale)] * 2
        offset = [int(rng.integers(min(0, d), max(0, d) + 1)) for d in spare]
        out, b, _ = scale_and_place(image, boxes, np.array([0]), scale, offset)
        assert np.all(b >= 0) and np.all(b[:, 2] <= 64) and np.all(b[:, 3] <= 64)
        for x_a, y_a, x_b, y_b in b:
            assert out[int((y_a + y_b) / 2), int((x_a + x_b) / 2)].min() > 150
