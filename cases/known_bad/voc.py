"""A VOC-style mAP@0.5 as the small third-party package the Pix2Seq port evaluates with computes it
(our own code, from its documented behaviour): per class with ground truth, detections by descending
score are a true positive when their best-IoU unmatched ground-truth box of the same image and class
overlaps >= 0.5; AP is the area under the all-point interpolated precision-recall curve; mAP is the mean
over the classes that have ground truth. Crowd regions are ordinary objects; nothing is capped."""

from __future__ import annotations

import numpy as np

from reference.pix2seq.pipeline import category_ids


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """box (4,) and boxes (N, 4) xyxy -> IoU (N,)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _average_precision(tp: np.ndarray, num_gt: int) -> float:
    recall = np.concatenate([[0.0], np.cumsum(tp) / num_gt, [1.0]])
    precision = np.concatenate([[0.0], np.cumsum(tp) / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope, from the right
    changes = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def voc_map50(gt: dict, table) -> float:
    """VOC-style mAP at IoU 0.5 of a prediction table (label i = i-th category of gt sorted by id)."""
    label_of = {cid: i for i, cid in enumerate(category_ids(gt))}
    truth: dict[tuple[int, int], list] = {}
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        truth.setdefault((label_of[ann["category_id"]], int(ann["image_id"])), []).append([x, y, x + w, y + h])
    aps = []
    for label in sorted({key[0] for key in truth}):
        rows = table[table["label"] == label].sort_values("score", ascending=False, kind="stable")
        gt_boxes = {img: np.asarray(b, np.float64) for (lab, img), b in truth.items() if lab == label}
        matched = {img: np.zeros(len(b), bool) for img, b in gt_boxes.items()}
        tp = []
        for img, box in zip(rows["image_id"].tolist(), rows[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float64)):
            if img not in gt_boxes:
                tp.append(0.0)
                continue
            overlaps = _iou(box, gt_boxes[img])
            best = int(np.argmax(overlaps))
            hit = overlaps[best] >= 0.5 and not matched[img][best]
            matched[img][best] |= hit
            tp.append(float(hit))
        num_gt = sum(len(b) for b in gt_boxes.values())
        aps.append(_average_precision(np.asarray(tp), num_gt) if tp else 0.0)
    return float(np.mean(aps)) if aps else 0.0
