"""The multi-task training batch, the training loop and the benchmark's scoring (bench/training/multitask.py,
bench/benchmarks/multitask.py) on a small generated dataset."""

import numpy as np
import pytest
import torch

from bench.benchmarks.multitask import codec_outputs, score
from bench.datasets import KEYPOINT_NAMES, KEYPOINT_SIGMAS
from bench.datasets.synthetic import SyntheticConfig, generate_dataset
from bench.training.multitask import (MultiTaskConfig, mirror_words, flip_target, load_split, make_batch, parse_weights,
                                   train_multitask)
from reference.pix2seqv2 import WordList, split_words
from reference.pix2seqv2.loss import target_mask
from reference.pix2seqv2.model import Pix2SeqV2Config, build_model


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    paths = generate_dataset(tmp_path_factory.mktemp("ds"), SyntheticConfig(num_train=3, num_val=6, seed=5))
    return load_split(paths, "val")


@pytest.fixture(scope="module")
def model_and_words(split):
    _, data = split
    words = WordList.build(c for caps in data.captions for c in caps)
    torch.manual_seed(0)
    return build_model(Pix2SeqV2Config.tiny(num_words=len(words), decoder_layers=1)), words


def test_parse_weights():
    assert parse_weights("detection=2, captioning") == {"detection": 2.0, "captioning": 1.0}
    with pytest.raises(ValueError, match="unknown task 'depth'"):
        parse_weights("depth=1")
    with pytest.raises(ValueError, match="positive sum"):
        MultiTaskConfig(weights={"detection": 0.0})


def test_flip_swaps_left_and_right(split):
    _, data = split
    assert [KEYPOINT_NAMES[i] for i in data.flip_index] == ["centre", "top", "bottom", "right", "left"]
    t = data.targets[0]
    f = flip_target(t, data.flip_index)
    w = t["width"]
    np.testing.assert_allclose(f["boxes"][:, [0, 2]], w - t["boxes"][:, [2, 0]], atol=1e-4)
    np.testing.assert_allclose(f["keypoints"][:, 3, 0], w - t["keypoints"][:, 4, 0], atol=1e-4)  # new left = old right
    assert mirror_words("a star to the left of a circle in the top right corner") == \
        "a star to the right of a circle in the top left corner"
    assert mirror_words("left_eye", "_") == "right_eye"


def test_batch_rows_follow_the_weights(split, model_and_words):
    _, data = split
    model, words = model_and_words
    cfg = MultiTaskConfig(weights={"segmentation": 1.0}, batch_images=3, rows_per_image=2, hflip=1.0)
    x, rows, tokens, tasks = make_batch(model, words, data, np.arange(3), cfg, np.random.default_rng(0),
                                        torch.device("cpu"))
    assert x.shape == (3, 3, 128, 128) and rows.tolist() == [0, 0, 1, 1, 2, 2]
    assert tasks == ["segmentation"] * 6
    assert torch.all(tokens[:, 0] == model.vocab.task_token("segmentation"))
    assert torch.all(target_mask(model.vocab, tokens).sum(1) > 0)


def test_two_training_steps_lower_nothing_but_run(split, model_and_words):
    _, data = split
    model, words = model_and_words
    cfg = MultiTaskConfig(steps=2, batch_images=2, rows_per_image=2, warmup_steps=1)
    summary = train_multitask(model, words, data, cfg, torch.device("cpu"), log=lambda s: None, log_every=1)
    assert summary["steps"] == 2 and all(np.isfinite(summary["losses"]))
    assert sum(summary["task_rows"].values()) == 8


def test_perfect_outputs_score_top_marks(split, model_and_words):
    """The ground truth as predictions scores 1; through the codecs (128 bins on 128 px) AP50 stays high."""
    dataset, data = split
    model, _ = model_and_words
    exact = codec_outputs(model.vocab, data, 128, codec=False)
    exact["captioning"] = [" ".join(split_words(data.captions[b][0])) for b in range(len(data))]
    metrics = score(exact, data, dataset, KEYPOINT_SIGMAS)
    for key in ("detection", "segmentation_gt", "keypoint_gt"):
        assert metrics[key]["AP"] == pytest.approx(1.0), key
    assert metrics["captioning"]["BLEU-4"] == pytest.approx(1.0)
    coded = score(codec_outputs(model.vocab, data, 128), data, dataset, KEYPOINT_SIGMAS)
    assert coded["detection"]["AP50"] == pytest.approx(1.0) and coded["segmentation_gt"]["AP50"] == pytest.approx(1.0)
    assert 0.5 < coded["keypoint_gt"]["AP50"] <= 1.0  # half-pixel quantisation costs some OKS
