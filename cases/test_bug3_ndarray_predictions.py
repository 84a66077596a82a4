"""Published bug 3 of the Pix2Seq port: the prediction table was filtered with isinstance(x, list)
while the per-image values were np.ndarray, so the table came out EMPTY and mAP was 0.0 with no
error (a public Pix2SeqV2 filters with isinstance(x, np.ndarray) instead: lists and tensors vanish).
The table must keep every predicted object whatever container holds it. Only prediction_table is
tested: its input is the ground truth's own detections."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from cases.strategies import coco_ground_truth, gt_detections

BUG = ("port bug 3: the prediction table is filtered by container type (isinstance(x, list) while the "
       "values are ndarrays): an empty table and mAP 0.0 without an error")
pytestmark = [pytest.mark.pix2seq, pytest.mark.case(stands_for=BUG, stage="prediction_table")]

CONTAINERS = {"ndarray": np.asarray, "list": lambda a: np.asarray(a).tolist(),
              "tuple": lambda a: tuple(np.asarray(a).tolist()), "tensor": lambda a: torch.as_tensor(np.asarray(a))}


def distinct_scores(image_id, n):
    return (np.arange(n) + 1) / (n + 1) * 0.5 + (image_id % 97) / 200


@given(data=st.data(), container=st.sampled_from(sorted(CONTAINERS) + ["mixed"]))
def test_table_keeps_every_object_whatever_the_container(api, data, container):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, grid=False), label="gt")
    ids = [im["id"] for im in gt["images"]]
    detections = []
    for det in gt_detections(gt, ids):
        if container == "mixed":
            wraps = [CONTAINERS[data.draw(st.sampled_from(sorted(CONTAINERS)))] for _ in det]
        else:
            wraps = [CONTAINERS[container]] * len(det)
        detections.append({key: wrap(value) for (key, value), wrap in zip(det.items(), wraps)})
    table = api.prediction_table(ids, detections, gt)
    assert len(table) == len(gt["annotations"]), f"{len(table)} rows for {len(gt['annotations'])} objects"


@given(data=st.data())
def test_table_rows_hold_every_detection_exactly(api, data):
    """Detections as postprocess returns them (ndarrays): the table holds each one's label, score and box
    exactly (whatever image id it carries: that is bug 4's case)."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, grid=False), label="gt")
    ids = [im["id"] for im in gt["images"]]
    detections = gt_detections(gt, ids, "ndarray", distinct_scores)
    table = api.prediction_table(ids, detections, gt)
    got = np.sort(table[["label", "score", "xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float64), axis=0)
    want = np.sort(np.concatenate([np.column_stack([d["labels"], d["scores"], d["boxes"]]) for d in detections]), axis=0)
    assert got.shape == want.shape, f"{len(got)} rows for {len(want)} detections"
    np.testing.assert_allclose(got, want, atol=1e-9)
