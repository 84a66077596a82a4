"""Results export of every Pix2SeqV2 task: decoded predictions -> the result files the evaluators read.

- detection: COCO result dicts {image_id, category_id, bbox [x, y, w, h], score}, one per object;
- segmentation: {image_id, category_id, segmentation (COCO RLE of the instance's polygons), score};
- keypoint: {image_id, category_id, keypoints [x, y, v] * K, score};
- captioning: {image_id, caption}, one per image (the COCO caption results format).

Label i is the i-th category of the ground truth sorted by category id. Every entry is a NEW dict built
from its own object only (a public Pix2SeqV2 project appended one re-used dict per image, so every entry
of an image ended up holding its last object). Inputs are never modified.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from reference.pix2seqv2.segmentation import polygons_to_rle
from reference.pix2seqv2.vocab import TASKS


def _images(gt: Mapping[str, Any]) -> dict[int, tuple[float, float]]:
    if not isinstance(gt, Mapping) or not isinstance(gt.get("images"), (list, tuple)):
        raise ValueError("gt must be a COCO dict with an 'images' list")
    return {int(im["id"]): (float(im["width"]), float(im["height"])) for im in gt["images"]}


def _category(cats: list[int], label, where: str) -> int:
    label = int(label)
    if not 0 <= label < len(cats):
        raise ValueError(f"{where}: label {label} is outside [0, {len(cats)}) (the ground truth's categories)")
    return cats[label]


def _detection_entries(image_id: int, det: Mapping[str, Any], cats: list[int], where: str) -> list[dict]:
    boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)
    labels = np.asarray(det["labels"]).reshape(-1)
    scores = np.asarray(det["scores"], np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"{where}: {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
    return [{"image_id": image_id, "category_id": _category(cats, lab, f"{where} object {k}"),
             "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(s)}
            for k, ((x0, y0, x1, y1), lab, s) in enumerate(zip(boxes.tolist(), labels.tolist(), scores.tolist()))]


def _instance_entries(task: str, image_id: int, instances, size: tuple[float, float], cats: list[int],
                      where: str) -> list[dict]:
    if isinstance(instances, Mapping):
        raise ValueError(f"{where}: expected a list of instances for the {task} task, got one dict")
    out = []
    for k, inst in enumerate(instances):
        entry = {"image_id": image_id, "category_id": _category(cats, inst["label"], f"{where} instance {k}"),
                 "score": float(inst["score"])}
        if task == "segmentation":
            entry["segmentation"] = polygons_to_rle(inst["polygons"], *size)
        else:
            entry["keypoints"] = np.asarray(inst["keypoints"], np.float64).reshape(-1).tolist()
        out.append(entry)
    return out


def export_results(task: str, image_ids: Sequence[int], predictions: Sequence[Any], gt: Mapping[str, Any]
                   ) -> list[dict[str, Any]]:
    """predictions[i] belongs to image image_ids[i]: a detection dict (detection), a list of instances
    {"label", "score", "polygons"} (segmentation) or {"label", "score", "keypoints" (K, 3)} (keypoint),
    or a caption str (captioning) -> the task's result entries (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if len(image_ids) != len(predictions):
        raise ValueError(f"{len(image_ids)} image ids for {len(predictions)} predictions")
    sizes = _images(gt)
    cats = sorted(int(c["id"]) for c in gt.get("categories", []))
    out: list[dict[str, Any]] = []
    for i, (image_id, pred) in enumerate(zip(image_ids, predictions)):
        image_id = int(image_id)
        if image_id not in sizes:
            raise ValueError(f"image_ids[{i}] = {image_id} is not an image of the ground truth")
        where = f"predictions[{i}] (image {image_id})"
        if task == "captioning":
            if not isinstance(pred, str):
                raise ValueError(f"{where}: a caption must be a str, got {type(pred).__name__}")
            out.append({"image_id": image_id, "caption": pred})
        elif task == "detection":
            out.extend(_detection_entries(image_id, pred, cats, where))
        else:
            out.extend(_instance_entries(task, image_id, pred, sizes[image_id], cats, where))
    return out
