"""The end of the Pix2Seq chain: detections -> prediction table -> COCO results, keyed by image id.

Fixes the port's bugs 3 and 4: the table is built from each detection's own arrays whatever their
container (list, tuple, ndarray, tensor), and every row carries the image id it was predicted for
(never an id looked up by row position in another table).

Label i is the i-th category of the ground truth sorted by category id.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

TABLE_COLUMNS = ["image_id", "label", "score", "xmin", "ymin", "xmax", "ymax"]


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.int64 if c in ("image_id", "label") else np.float64)
                         for c in TABLE_COLUMNS})


def _array(detection: Mapping[str, Any], key: str, dtype, shape_tail: tuple[int, ...], index: int) -> np.ndarray:
    if key not in detection:
        raise ValueError(f"detections[{index}] has no {key!r} (keys: {sorted(detection)})")
    value = detection[key]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=dtype)
    if array.size == 0:
        array = array.reshape((0, *shape_tail))
    if array.shape[1:] != shape_tail:
        raise ValueError(f"detections[{index}][{key!r}] has shape {array.shape}, expected (K, *{shape_tail})")
    return array


def prediction_table(image_ids: Sequence[int], detections: Sequence[Mapping[str, Any]], gt=None) -> pd.DataFrame:
    """One row per predicted object: image_id, label, score, xmin, ymin, xmax, ymax (pixels).

    image_ids[i] is the image detections[i] was predicted for. `gt` is accepted for interface
    compatibility with the port's stage and not needed.
    """
    if len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} image ids for {len(detections)} detections")
    frames = []
    for index, (image_id, det) in enumerate(zip(image_ids, detections)):
        boxes = _array(det, "boxes", np.float64, (4,), index)
        labels = _array(det, "labels", np.int64, (), index)
        scores = _array(det, "scores", np.float64, (), index)
        if not (len(boxes) == len(labels) == len(scores)):
            raise ValueError(f"detections[{index}]: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
        if len(boxes):
            frames.append(pd.DataFrame({
                "image_id": np.full(len(boxes), int(image_id), np.int64), "label": labels, "score": scores,
                "xmin": boxes[:, 0], "ymin": boxes[:, 1], "xmax": boxes[:, 2], "ymax": boxes[:, 3]}))
    if not frames:
        return empty_table()
    return pd.concat(frames, ignore_index=True)[TABLE_COLUMNS]


def category_ids(gt: Mapping[str, Any]) -> list[int]:
    """Category ids sorted; label i <-> category_ids(gt)[i]."""
    return sorted(int(c["id"]) for c in gt["categories"])


def detections_to_coco(table: pd.DataFrame, gt: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Prediction table -> COCO result dicts (image_id, category_id, bbox xywh, score)."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"prediction table lacks columns {missing}")
    cats = category_ids(gt)
    labels = table["label"].to_numpy(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= len(cats)))
    if bad.size:
        raise ValueError(f"prediction table row {bad[0]}: label {labels[bad[0]]} outside [0, {len(cats)})")
    x0, y0 = table["xmin"].to_numpy(np.float64), table["ymin"].to_numpy(np.float64)
    w = table["xmax"].to_numpy(np.float64) - x0
    h = table["ymax"].to_numpy(np.float64) - y0
    ids, scores = table["image_id"].to_numpy(np.int64), table["score"].to_numpy(np.float64)
    return [{"image_id": int(ids[i]), "category_id": cats[labels[i]],
             "bbox": [float(x0[i]), float(y0[i]), float(w[i]), float(h[i])], "score": float(scores[i])}
            for i in range(len(table))]


def ground_truth_objects(gt: Mapping[str, Any]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """image id -> (boxes (N,4) xyxy pixels, labels (N,)) for every image of `gt` (crowd boxes skipped)."""
    label_of = {cid: i for i, cid in enumerate(category_ids(gt))}
    objects: dict[int, list] = {int(img["id"]): [] for img in gt["images"]}
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = ann["bbox"]
        objects[int(ann["image_id"])].append(([x, y, x + w, y + h], label_of[int(ann["category_id"])]))
    out = {}
    for image_id, items in objects.items():
        boxes = np.array([b for b, _ in items], np.float64).reshape(-1, 4)
        out[image_id] = (boxes, np.array([lab for _, lab in items], np.int64))
    return out
