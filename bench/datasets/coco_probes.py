"""Generated COCO detection sets that probe an evaluator: COCO-sized ground truth with crowd regions,
detections with duplicates, boxes spilling past the image edge, score ties, and the transformations
that real files show (string ids, missing image sizes, corners given as xywh).

Everything is deterministic in `seed`; generation is vectorised (5000 images x 100 detections in ~1 s).
Boxes are COCO xywh floats. Used by tests/test_coco_parity.py, the `evaluation` and `perf-eval` benchmarks.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

SCORE_MODES = ("float", "clip", "round1", "round2")


def _scores(rng: np.random.Generator, quality: np.ndarray, mode: str) -> np.ndarray:
    """Scores that rise with quality (N,) in [0, 1]; 'clip' saturates at 1.0 (ties), 'round1'/'round2'
    round to 1 / 2 decimals (ties)."""
    s = np.clip(0.6 * quality + 0.4 * rng.uniform(0, 1, quality.shape), 0, 1)
    if mode == "clip":
        return np.minimum(1.0, 1.3 * s)
    if mode == "round1":
        return np.round(s, 1)
    if mode == "round2":
        return np.round(s, 2)
    if mode != "float":
        raise ValueError(f"score mode must be one of {SCORE_MODES}, got {mode!r}")
    return s


def detection_probe(num_images: int, per_image: int = 100, num_categories: int = 80, crowd: float = 0.01,
                    seed: int = 0, scores: str = "float", size: tuple[int, int] = (640, 480),
                    spill: float = 0.05, objects: tuple[int, int] = (2, 15)) -> tuple[dict, list[dict]]:
    """(ground truth, detections): `num_images` images of `size` (w, h) with objects[0]..objects[1]-1
    objects each (a `crowd` share of them crowd regions), and `per_image` detections per image: one to
    three jittered copies of each object (matches at varied IoU, duplicates), the rest random boxes of
    random categories; a `spill` share of detections is pushed past the right/bottom edge (valid xywh)."""
    rng = np.random.default_rng(seed)
    W, H = size
    n_obj = rng.integers(objects[0], objects[1], num_images)
    img_of_obj = np.repeat(np.arange(num_images), n_obj)
    n = len(img_of_obj)
    wh = np.exp(rng.uniform(np.log(8), np.log(0.5 * min(W, H)), (n, 2)))  # log-uniform object sizes
    xy = rng.uniform(0, 1, (n, 2)) * (np.array([W, H]) - wh)
    cats = rng.integers(1, num_categories + 1, n)
    is_crowd = rng.uniform(0, 1, n) < crowd
    images = [{"id": i + 1, "width": W, "height": H} for i in range(num_images)]
    anns = [{"id": j + 1, "image_id": int(img_of_obj[j]) + 1, "category_id": int(cats[j]), "iscrowd": int(is_crowd[j]),
             "bbox": [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
             "area": float(wh[j, 0] * wh[j, 1] * (0.85 if not is_crowd[j] else 1.0))} for j in range(n)]

    copies = rng.integers(1, 4, n)  # 1-3 detections per object
    src = np.repeat(np.arange(n), copies)
    det_img = img_of_obj[src]
    # cap the copies at per_image per image, then fill each image with random boxes up to per_image
    order = np.argsort(det_img, kind="stable")
    src, det_img = src[order], det_img[order]
    rank = np.arange(len(src)) - np.searchsorted(det_img, det_img)
    keep = rank < per_image
    src, det_img = src[keep], det_img[keep]
    jitter = rng.normal(0, 1, (len(src), 4)) * rng.uniform(0.02, 0.25, (len(src), 1))
    boxes = np.concatenate([xy[src] + jitter[:, :2] * wh[src], wh[src] * np.exp(jitter[:, 2:])], axis=1)
    quality = np.exp(-5 * np.abs(jitter).mean(axis=1))
    fill = per_image - np.bincount(det_img, minlength=num_images)
    rand_img = np.repeat(np.arange(num_images), fill)
    rand_wh = np.exp(rng.uniform(np.log(4), np.log(0.4 * min(W, H)), (len(rand_img), 2)))
    rand_xy = rng.uniform(0, 1, (len(rand_img), 2)) * (np.array([W, H]) - rand_wh)
    boxes = np.concatenate([boxes, np.concatenate([rand_xy, rand_wh], axis=1)])
    det_img = np.concatenate([det_img, rand_img])
    det_cat = np.concatenate([cats[src], rng.integers(1, num_categories + 1, len(rand_img))])
    quality = np.concatenate([quality, rng.uniform(0, 0.5, len(rand_img))])
    spilled = rng.uniform(0, 1, len(boxes)) < spill  # pushed past the right / bottom edge
    side = rng.integers(0, 2, len(boxes))
    over = rng.uniform(0.1, 0.6, len(boxes))
    for axis, limit in ((0, W), (1, H)):
        sel = spilled & (side == axis)
        boxes[sel, axis] = limit - boxes[sel, axis + 2] * (1 - over[sel])  # x + w passes the edge by over * w
    boxes[:, :2] = np.maximum(boxes[:, :2], 0.0)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
    s = _scores(rng, quality, scores)
    order = np.argsort(det_img, kind="stable")
    dets = [{"image_id": int(i) + 1, "category_id": int(c), "bbox": b, "score": float(v)}
            for i, c, b, v in zip(det_img[order].tolist(), det_cat[order].tolist(), boxes[order].tolist(),
                                  s[order].tolist())]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"class{c}"} for c in range(1, num_categories + 1)]}
    return gt, dets


def with_string_ids(gt: dict, dets: list[dict]) -> tuple[dict, list[dict]]:
    """The same set with image ids as strings ('img7'): string order differs from numeric order."""
    gt = copy.deepcopy(gt)
    for im in gt["images"]:
        im["id"] = f"img{im['id']}"
    for a in gt["annotations"]:
        a["image_id"] = f"img{a['image_id']}"
    return gt, [{**d, "image_id": f"img{d['image_id']}"} for d in dets]


def without_sizes(gt: dict, share: float = 1.0, seed: int = 0) -> dict:
    """The ground truth with width/height removed (or None) from a `share` of its images."""
    gt = copy.deepcopy(gt)
    rng = np.random.default_rng(seed)
    for im in gt["images"]:
        if rng.uniform() < share:
            if rng.uniform() < 0.5:
                im.pop("width", None), im.pop("height", None)
            else:
                im["width"] = im["height"] = None
    return gt


def as_corners(dets: list[dict]) -> list[dict]:
    """The detections with their boxes written as corners (x0, y0, x1, y1) in the bbox field: the xyxy mistake."""
    return [{**d, "bbox": [d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]}
            for d in dets]


def cap_probe() -> tuple[dict, list[dict]]:
    """Two images with one object each, both detected; image 1 also holds 100 confident detections of
    another class (no object of it). pycocotools: AP 1.0; a 100-per-image cap across classes drops the
    first match: AP 51/101 = 0.505."""
    gt = {"images": [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 640, "height": 480}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 80, 60], "area": 4800.0,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [300, 200, 50, 90], "area": 4500.0,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    dets = [{"image_id": 1, "category_id": 2, "bbox": [5.0 * i, 300.0, 30.0, 30.0], "score": 0.9} for i in range(100)]
    dets += [{"image_id": 1, "category_id": 1, "bbox": [100, 100, 80, 60], "score": 0.5},
             {"image_id": 2, "category_id": 1, "bbox": [300, 200, 50, 90], "score": 0.5}]
    return gt, dets


def in_image_corners_probe(num_images: int = 50, seed: int = 0) -> tuple[dict, list[dict]]:
    """Perfect detections written as corners, of objects near the image's top-left corner, so that the
    corners read as xywh stay inside the image and still overlap the objects (an edge test cannot see it;
    pycocotools scores it well above 0 and below 1)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(num_images):
        images.append({"id": i + 1, "width": 640, "height": 480})
        for _ in range(int(rng.integers(1, 5))):
            w, h = rng.uniform(20, 150, 2)
            x, y = rng.uniform(0, 0.15, 2) * np.array([w, h])  # near the top-left corner
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)})
            dets.append({"image_id": i + 1, "category_id": 1, "bbox": [float(x), float(y), float(x + w), float(y + h)],
                         "score": float(rng.uniform(0.3, 1.0))})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}, dets


def probe_summary(gt: dict[str, Any], dets: list[dict[str, Any]]) -> dict[str, int]:
    """Counts that describe a probe: images, objects, crowd, detections, spilling boxes, max per image."""
    size = {im["id"]: (im.get("width"), im.get("height")) for im in gt["images"]}
    spill = sum(1 for d in dets if size[d["image_id"]][0] is not None and (
        d["bbox"][0] + d["bbox"][2] > size[d["image_id"]][0] or d["bbox"][1] + d["bbox"][3] > size[d["image_id"]][1]))
    per = np.bincount(np.unique([d["image_id"] for d in dets], return_inverse=True)[1]) if dets else np.zeros(1, int)
    scores = np.asarray([d["score"] for d in dets])
    return {"images": len(gt["images"]), "objects": len(gt["annotations"]),
            "crowd": sum(a.get("iscrowd", 0) for a in gt["annotations"]), "detections": len(dets),
            "spilling": spill, "max_per_image": int(per.max()),
            "tied_scores": int(len(scores) - len(np.unique(scores)))}


def _random_boxes(dets: list[dict], rng: np.random.Generator, size: tuple[int, int]) -> list[dict]:
    """The same detections with boxes drawn at random inside the image (a detector that finds nothing)."""
    W, H = size
    wh = np.exp(rng.uniform(np.log(4), np.log(0.4 * min(W, H)), (len(dets), 2)))
    xy = rng.uniform(0, 1, (len(dets), 2)) * (np.array([W, H]) - wh)
    return [{**d, "bbox": [*p.tolist(), *q.tolist()]} for d, p, q in zip(dets, xy, wh)]


def _near_origin(gt: dict, dets: list[dict], factor: float = 0.1) -> tuple[dict, list[dict]]:
    """Ground truth and detections moved toward the top-left corner (x, y scaled by `factor`)."""
    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        a["bbox"] = [a["bbox"][0] * factor, a["bbox"][1] * factor, *a["bbox"][2:]]
    return gt, [{**d, "bbox": [d["bbox"][0] * factor, d["bbox"][1] * factor, *d["bbox"][2:]]} for d in dets]


def xyxy_scenarios(num_sets: int, seed: int = 0) -> dict[str, tuple[bool, list[tuple[dict, list[dict]]]]]:
    """Generated sets for the xyxy statistic's rates: name -> (boxes are corners?, [(gt, dets), ...]).
    Each set: 5 images of 640 x 480, 1-4 objects of 3 classes, 10 detections per image."""
    out: dict[str, tuple[bool, list]] = {}
    rng = np.random.default_rng(seed)
    for i in range(num_sets):
        s = seed * 100_003 + i
        gt, dets = detection_probe(5, per_image=10, num_categories=3, objects=(1, 5), seed=s, spill=0.2)
        gt0, dets0 = detection_probe(5, per_image=10, num_categories=3, objects=(1, 5), seed=s, spill=0.0)
        near = _near_origin(gt0, dets0)
        rand = _random_boxes(dets, rng, (640, 480))
        few = int(rng.integers(1, 4))
        sets = {
            "xywh: detector, 20% of boxes past the edge": (False, (gt, dets)),
            "xywh: detector, objects near the top-left corner": (False, near),
            "xywh: random boxes, 20% past the edge": (False, (gt, _spill_some(rand, rng))),
            "xywh: 1-3 boxes, past the edge allowed": (False, (gt, dets[:few])),
            "xywh, adversarial: random boxes that all read as corners, 20% past the edge": (False, (gt, _corner_like(dets, rng))),
            "corners: detector": (True, (gt0, as_corners(dets0))),
            "corners: objects near the top-left (inside the image read as xywh)": (True, in_image_corners_probe(5, seed=s)),
            "corners: random boxes": (True, (gt0, as_corners(_random_boxes(dets0, rng, (640, 480))))),
            "corners: 1-3 boxes": (True, (gt0, as_corners(dets0[:few]))),
        }
        for name, (corners, pair) in sets.items():
            out.setdefault(name, (corners, []))[1].append(pair)
    return out


def _corner_like(dets: list[dict], rng: np.random.Generator, size=(640, 480)) -> list[dict]:
    """Random valid xywh boxes with w >= x and h >= y (so every box also reads as corners), a fifth of them
    passing the right edge by more than 10%: the case the statistic is weakest on."""
    W, H = size
    out = []
    for d in dets:
        x, y = rng.uniform(0, 0.3 * W), rng.uniform(0, 0.3 * H)
        w, h = rng.uniform(x, W - x), rng.uniform(y, H - y)
        if rng.uniform() < 0.2:
            w = max(w, rng.uniform(1.15, 1.4) * W - x)
        out.append({**d, "bbox": [x, y, w, h]})
    return out


def _spill_some(dets: list[dict], rng: np.random.Generator, share: float = 0.2, size=(640, 480)) -> list[dict]:
    """A `share` of the boxes moved so that they pass the right edge by 10-60% of their width."""
    out = []
    for d in dets:
        x, y, w, h = d["bbox"]
        if rng.uniform() < share:
            x = size[0] - w * (1 - rng.uniform(0.1, 0.6))
        out.append({**d, "bbox": [x, y, w, h]})
    return out
