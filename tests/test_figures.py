"""bench.figures: the sample figures draw every kind of image a run produces (no ground truth, no detection,
fewer images than asked for) and refuse keypoint sets they cannot mark."""

from types import SimpleNamespace

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from bench.figures import KEYPOINT_MARKERS, detection_samples, multitask_samples

CLASSES = ["circle", "square", "star"]


def _png_size(path):
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


def test_detection_samples_with_empty_images_and_fewer_images_than_count(tmp_path):
    images = np.zeros((3, 64, 64, 3), np.uint8)
    gt = [{"image_id": 1, "boxes": np.array([[2.0, 0.0, 30.0, 20.0]]), "labels": np.array([0])},
          {"image_id": 2, "boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)},
          {"image_id": 3, "boxes": np.array([[10.0, 10.0, 60.0, 60.0]]), "labels": np.array([2])}]
    dets = [{"boxes": np.array([[3.0, 1.0, 29.0, 21.0]]), "labels": np.array([0]), "scores": np.array([0.9])},
            {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)},
            {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}]
    path = detection_samples(tmp_path / "d.png", images, gt, dets, CLASSES, count=8)
    height, width = _png_size(path)
    assert width > height  # 2 rows of two image pairs: wider than tall


def test_multitask_samples_marks_each_keypoint_and_refuses_too_many(tmp_path):
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((8, 8), np.uint8), 10)))
    rle["counts"] = rle["counts"].decode()
    data = SimpleNamespace(images=np.zeros((2, 28, 28, 3), np.uint8), captions=[["a red circle"], []])
    keypoints = [[14, 14, 2], [14, 10, 2], [14, 18, 0], [10, 14, 2], [18, 14, 2]]
    out = {"num_images": 2, "captioning": ["a circle", ""],
           "detection": [{"boxes": np.array([[10.0, 10.0, 18.0, 18.0]]), "labels": np.array([0]),
                          "scores": np.array([0.5])},
                         {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}],
           "segmentation_det": [{"image": 0, "rle": rle}], "keypoint_det": [{"image": 0, "keypoints": keypoints}]}
    names = ["centre", "top", "bottom", "left", "right"]
    assert multitask_samples(tmp_path / "m.png", data, out, CLASSES, names).is_file()
    with pytest.raises(ValueError, match=r"keypoint_names: at most 10 keypoints"):
        multitask_samples(tmp_path / "x.png", data, out, CLASSES, [f"k{i}" for i in range(len(KEYPOINT_MARKERS) + 1)])
