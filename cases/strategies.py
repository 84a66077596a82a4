"""Generated inputs for the Pix2Seq cases: COCO ground truths whose boxes lie exactly on the
quantisation grid (image side = (num_bins - 1) pixels, integer corners), so that a correct pipeline
fed each image's own ground-truth sequence (the perfect stand-in model) scores mAP exactly 1.0.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st


@st.composite
def boxes_and_labels(draw, side: int, num_classes: int, min_objects: int = 0, max_objects: int = 6,
                     min_size: int = 4):
    """(boxes (N,4) int64 xyxy inside a side x side image, labels (N,)) with N in [min, max]."""
    n = draw(st.integers(min_objects, max_objects))
    boxes, labels = [], []
    for _ in range(n):
        x0 = draw(st.integers(0, side - min_size))
        y0 = draw(st.integers(0, side - min_size))
        x1 = draw(st.integers(x0 + min_size, side))
        y1 = draw(st.integers(y0 + min_size, side))
        boxes.append([x0, y0, x1, y1])
        labels.append(draw(st.integers(0, num_classes - 1)))
    return np.array(boxes, np.int64).reshape(-1, 4), np.array(labels, np.int64)


@st.composite
def coco_ground_truth(draw, num_bins: int, num_classes: int, min_images: int = 1, max_images: int = 6,
                      max_objects: int = 5, allow_empty_images: bool = True):
    """A COCO-format ground truth dict with shuffled image ids, 1-based annotation ids, and categories
    with non-contiguous ids (label i = i-th category sorted by id)."""
    side = num_bins - 1
    n_cats = draw(st.integers(1, min(num_classes, 4)))
    cat_ids = sorted(draw(st.lists(st.integers(1, 90), min_size=n_cats, max_size=n_cats, unique=True)))
    n_images = draw(st.integers(min_images, max_images))
    image_ids = draw(st.lists(st.integers(1, 10_000), min_size=n_images, max_size=n_images, unique=True))
    images, annotations = [], []
    for image_id in image_ids:
        images.append({"id": image_id, "width": side, "height": side, "file_name": f"{image_id}.png"})
        boxes, labels = draw(boxes_and_labels(side, n_cats, 0 if allow_empty_images else 1, max_objects))
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat_ids[label],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                                "iscrowd": 0})
    order = draw(st.permutations(list(range(len(annotations)))))
    return {"images": images, "annotations": [annotations[i] for i in order],
            "categories": [{"id": c, "name": f"class{c}"} for c in cat_ids]}


def image_objects(gt: dict, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth (boxes (N,4) xyxy, labels (N,)) of one image, in annotation-id order."""
    cat_ids = sorted(c["id"] for c in gt["categories"])
    anns = sorted((a for a in gt["annotations"] if a["image_id"] == image_id), key=lambda a: a["id"])
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns], np.float64).reshape(-1, 4)
    return boxes, np.array([cat_ids.index(a["category_id"]) for a in anns], np.int64)


def perfect_model_rows(impl, gt: dict):
    """The perfect stand-in model: every image's own ground-truth sequence with probability 1.

    Returns (image_ids, tokens (B, max_len) long, token_probs (B, max_len) float, sizes [(w, h)])."""
    image_ids, sequences, sizes = [], [], []
    for image in gt["images"]:
        boxes, labels = image_objects(gt, image["id"])
        image_ids.append(image["id"])
        sequences.append(impl.encode(boxes, labels, image["width"], image["height"]))
        sizes.append((image["width"], image["height"]))
    tokens = torch.as_tensor(impl.collate(sequences))
    return image_ids, tokens, torch.ones(tokens.shape, dtype=torch.float64), sizes


def run_pipeline(impl, gt: dict, tokens=None, token_probs=None):
    """Stand-in model (or the given rows) -> postprocess -> prediction table -> (table, metrics)."""
    image_ids, perfect_tokens, perfect_probs, sizes = perfect_model_rows(impl, gt)
    tokens = perfect_tokens if tokens is None else tokens
    token_probs = perfect_probs if token_probs is None else token_probs
    detections = impl.postprocess(tokens, token_probs, sizes)
    table = impl.prediction_table(image_ids, detections, gt)
    return table, impl.evaluate(gt, table)
