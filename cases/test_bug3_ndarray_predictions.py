"""Published bug 3 of the Pix2Seq port: the prediction table was filtered with isinstance(x, list)
while the per-image values were np.ndarray, so the table came out EMPTY and mAP was 0.0 with no
error. The table must keep every predicted object whatever container holds it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.strategies import coco_ground_truth, run_pipeline

pytestmark = pytest.mark.pix2seq

CONTAINERS = {"ndarray": np.asarray, "list": lambda a: np.asarray(a).tolist(),
              "tuple": lambda a: tuple(np.asarray(a).tolist()), "tensor": lambda a: torch.as_tensor(np.asarray(a))}


@given(counts=st.lists(st.integers(0, 4), min_size=1, max_size=5), container=st.sampled_from(sorted(CONTAINERS)))
def test_table_keeps_every_object_whatever_the_container(api, counts, container):
    wrap = CONTAINERS[container]
    rng = np.random.default_rng(len(counts))
    detections = []
    for n in counts:
        x0 = rng.uniform(0, 50, n)
        boxes = np.stack([x0, x0, x0 + 10, x0 + 20], 1)
        detections.append({"boxes": wrap(boxes), "labels": wrap(np.zeros(n, np.int64)),
                           "scores": wrap(rng.uniform(0, 1, n))})
    image_ids = list(range(1, len(counts) + 1))
    gt = {"images": [{"id": i, "width": 100, "height": 100} for i in image_ids],
          "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0,
                           "iscrowd": 0} for k, i in enumerate(image_ids)],
          "categories": [{"id": 1, "name": "thing"}]}
    table = api.prediction_table(image_ids, detections, gt)
    assert len(table) == sum(counts)


@settings(max_examples=20)  # each example runs COCOeval
@given(data=st.data())
def test_perfect_predictions_do_not_score_zero(api, data):
    """The silent failure mode: with every object predicted exactly, AP50 is 1.0, never 0.0."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, allow_empty_images=False), label="gt")
    table, metrics = run_pipeline(api, gt)
    assert len(table) == len(gt["annotations"])
    assert metrics["AP50"] == pytest.approx(1.0)
