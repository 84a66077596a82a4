"""Pure helpers of the COCO evaluation: input validation, safe internal copies, canonical ordering
and the per-image cap. Nothing here imports pycocotools; bench/metrics/coco.py is the glue.

Every check raises ValueError naming the offending input (DESIGN.md §5 lists the pitfalls guarded).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np

IOU_TYPES = ("bbox", "segm", "keypoints")
DET_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KPT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# pycocotools' default person-keypoint sigmas (17 keypoints), used when kpt_oks_sigmas is not given.
COCO_KPT_OKS_SIGMAS = tuple(np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                                      .87, .87, .89, .89]) / 10.0)
_PAYLOAD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}
_SHOW = 8  # offending ids listed in a message


def stat_names(iou_type: str) -> tuple[str, ...]:
    """Names of COCOeval.stats, in order, for an iou type."""
    return KPT_STAT_NAMES if iou_type == "keypoints" else DET_STAT_NAMES


def boxes_xyxy_to_xywh(boxes: Any) -> np.ndarray:
    """(N, 4) corner boxes (x0, y0, x1, y1) -> (N, 4) float64 COCO boxes (x, y, w, h)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)  # (N, 4)


def boxes_xywh_to_xyxy(boxes: Any) -> np.ndarray:
    """(N, 4) COCO boxes (x, y, w, h) -> (N, 4) float64 corner boxes (x0, y0, x1, y1)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)  # (N, 4)


def _some(ids: Sequence[Any]) -> str:
    ids = sorted(set(ids), key=repr)
    more = f" and {len(ids) - _SHOW} more" if len(ids) > _SHOW else ""
    return f"{ids[:_SHOW]}{more}"


def as_int_ids(values: Sequence[Any], what: str) -> np.ndarray:
    """Integer ids (ints, numpy ints or integral floats) -> (N,) int64; anything else -> ValueError."""
    try:
        arr = np.asarray(values)
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64).reshape(-1)
        if arr.dtype.kind == "f" and arr.ndim == 1 and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
            return arr.astype(np.int64)
    except (TypeError, ValueError):
        pass
    bad = [i for i, v in enumerate(values)
           if isinstance(v, bool) or not (isinstance(v, (int, np.integer))
                                          or (isinstance(v, float) and v.is_integer()))]
    raise ValueError(f"{what} must be integers; entries {bad[:_SHOW]} are not "
                     f"(e.g. {values[bad[0]]!r})" if bad else f"{what} must be integers")


def _check_boxes(boxes: np.ndarray, sizes: np.ndarray, tolerance: float | None, name) -> None:
    """boxes (N, 4) xywh, sizes (N, 2) image (width, height); name(i) describes item i in messages."""
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: bbox {boxes[bad[0]].tolist()} is not finite (NaN or inf)"
                         f"{f'; {bad.size - 1} more such boxes' if bad.size > 1 else ''}")
    bad = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: bbox {boxes[bad[0]].tolist()} has a negative width or height "
                         "(COCO boxes are x, y, w, h)")
    if tolerance is None or not len(boxes):
        return
    slack = np.maximum(1.0, tolerance * sizes)  # (N, 2)
    over = boxes[:, :2] + boxes[:, 2:] - sizes  # (N, 2) how far x+w, y+h pass the right/bottom edge
    bad = np.flatnonzero((over > slack).any(axis=1))
    if bad.size:
        i = bad[0]
        x, y, w, h = boxes[i].tolist()
        raise ValueError(
            f"{name(i)}: bbox {boxes[i].tolist()} reaches x+w={x + w:g}, y+h={y + h:g} beyond the image "
            f"({sizes[i, 0]:g} x {sizes[i, 1]:g}) by more than the tolerance; the boxes look like xyxy "
            "(x0, y0, x1, y1) but COCO wants xywh - convert with boxes_xyxy_to_xywh"
            f"{f' ({bad.size} boxes affected)' if bad.size > 1 else ''}")


def _records(obj: Mapping[str, Any], key: str) -> list:
    if key not in obj or not isinstance(obj[key], (list, tuple)):
        raise ValueError(f"ground truth lacks a '{key}' list (COCO format: images, annotations, categories)")
    return list(obj[key])


def prepare_ground_truth(gt: Mapping[str, Any], iou_type: str, num_keypoints: int,
                         xyxy_tolerance: float | None) -> dict[str, Any]:
    """Validate a COCO ground truth and return a private copy safe to hand to pycocotools.

    The copy has annotation ids renumbered 1..N in input order (id 0 silently turns matches into
    misses, cocoapi #672, and duplicate ids collapse in COCO's index), `iscrowd` defaulting to 0 and,
    for keypoints, `num_keypoints` defaulting to the count of labelled keypoints (v > 0)."""
    if not isinstance(gt, Mapping):
        raise ValueError(f"ground truth must be a COCO dict, got {type(gt).__name__}")
    images, anns, cats = _records(gt, "images"), _records(gt, "annotations"), _records(gt, "categories")
    if not images:
        raise ValueError("ground truth has no images: nothing to evaluate")
    for i, img in enumerate(images):
        for k in ("id", "width", "height"):
            if k not in img:
                raise ValueError(f"ground truth image #{i} lacks '{k}'")
        if not (float(img["width"]) > 0 and float(img["height"]) > 0):
            raise ValueError(f"ground truth image #{i} (id {img['id']}): width/height must be positive, "
                             f"got {img['width']} x {img['height']}")
    image_ids = as_int_ids([img["id"] for img in images], "ground truth image ids")
    dup = image_ids[np.flatnonzero(np.diff(np.sort(image_ids)) == 0)]
    if dup.size:
        raise ValueError(f"ground truth has duplicate image ids {_some(dup.tolist())}")
    cat_ids = as_int_ids([c["id"] if "id" in c else None for c in cats], "ground truth category ids")
    dup = cat_ids[np.flatnonzero(np.diff(np.sort(cat_ids)) == 0)]
    if dup.size:
        raise ValueError(f"ground truth has duplicate category ids {_some(dup.tolist())}")

    new_images = [{**img, "id": int(i)} for img, i in zip(images, image_ids.tolist())]
    new_cats = [{**c, "id": int(i)} for c, i in zip(cats, cat_ids.tolist())]
    payload = _PAYLOAD[iou_type]
    need = ("image_id", "category_id", "area") + (("bbox",) if iou_type != "segm" else ()) + (payload,)
    for i, a in enumerate(anns):
        missing = [k for k in dict.fromkeys(need) if k not in a]
        if missing:
            raise ValueError(f"ground truth annotation #{i} (id {a.get('id')}) lacks {missing} "
                             f"(needed for iou_type={iou_type!r})")
    a_img = as_int_ids([a["image_id"] for a in anns], "ground truth annotation image_id")
    a_cat = as_int_ids([a["category_id"] for a in anns], "ground truth annotation category_id")
    unknown = set(a_img.tolist()) - set(image_ids.tolist())
    if unknown:
        raise ValueError(f"ground truth annotations refer to image ids not in 'images': {_some(unknown)}")
    unknown = set(a_cat.tolist()) - set(cat_ids.tolist())
    if unknown:
        raise ValueError(f"ground truth annotations refer to category ids not in 'categories': {_some(unknown)}")
    areas = np.asarray([a["area"] for a in anns], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(areas) | (areas < 0))
    if bad.size:
        raise ValueError(f"ground truth annotation #{bad[0]} (id {anns[bad[0]].get('id')}): "
                         f"area {areas[bad[0]]} must be finite and >= 0")
    size_of = {int(img["id"]): (float(img["width"]), float(img["height"])) for img in new_images}
    with_box = [i for i, a in enumerate(anns) if "bbox" in a]
    if with_box:
        boxes = _float_rows([anns[i]["bbox"] for i in with_box], 4,
                            lambda j: f"ground truth annotation #{with_box[j]}", "bbox")
        sizes = np.asarray([size_of[int(a_img[i])] for i in with_box])
        _check_boxes(boxes, sizes, xyxy_tolerance,
                     lambda j: f"ground truth annotation #{with_box[j]} (id {anns[with_box[j]].get('id')})")
    if iou_type == "keypoints":
        kp_name = lambda j: f"ground truth annotation #{j} (id {anns[j].get('id')})"  # noqa: E731
        _check_finite(_float_rows([a["keypoints"] for a in anns], 3 * num_keypoints, kp_name, "keypoints"),
                      kp_name, "keypoints")

    new_anns = []
    for i, a in enumerate(anns):
        b = {k: v for k, v in a.items() if k not in ("segmentation", "keypoints", "bbox")}
        b.update(id=i + 1, image_id=int(a_img[i]), category_id=int(a_cat[i]), area=float(areas[i]),
                 iscrowd=int(a.get("iscrowd", 0) or 0))
        for k in ("segmentation", "keypoints", "bbox"):
            if k in a:
                b[k] = copy.deepcopy(a[k])
        if iou_type == "keypoints" and "num_keypoints" not in a:
            b["num_keypoints"] = int(np.count_nonzero(np.asarray(a["keypoints"], np.float64)[2::3] > 0))
        new_anns.append(b)
    return {"info": copy.deepcopy(gt.get("info", {})), "images": new_images, "annotations": new_anns,
            "categories": new_cats}


def _float_rows(rows: Sequence[Any], width: int, name, what: str) -> np.ndarray:
    """Rows of `width` numbers -> (N, width) float64, else ValueError naming the first bad row."""
    try:
        arr = np.asarray(rows, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] == width or len(rows) == 0:
            return arr.reshape(len(rows), width)
    except (TypeError, ValueError):
        pass
    for j, r in enumerate(rows):
        try:
            ok = np.asarray(r, dtype=np.float64).shape == (width,)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name(j)}: {what} must be {width} numbers, got {r!r}")
    raise ValueError(f"{what} must be rows of {width} numbers")


def _check_finite(values: np.ndarray, name, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: {what} contain NaN or inf")


def top_per_image(image_ids: np.ndarray, scores: np.ndarray, tiebreak: np.ndarray,
                  max_per_image: int | None) -> np.ndarray:
    """Indices of the detections kept, in canonical order: by image id, score descending, then the
    tie-break columns (N, C) ascending, at most `max_per_image` per image. The order depends only on
    the detections' contents, so any permutation of the input gives the same evaluation."""
    keys = [tiebreak[:, c] for c in range(tiebreak.shape[1] - 1, -1, -1)] + [-scores, image_ids]
    order = np.lexsort(keys) if len(scores) else np.zeros(0, np.int64)
    if max_per_image is None:
        return order
    sorted_ids = image_ids[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_ids, sorted_ids, side="left")  # rank in image
    return order[rank < max_per_image]


def prepare_detections(detections: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], iou_type: str,
                       max_per_image: int | None, num_keypoints: int,
                       xyxy_tolerance: float | None) -> list[dict[str, Any]]:
    """Validate COCO result dicts against a prepared ground truth and return fresh result dicts
    (only image_id, category_id, score and the iou type's payload) in canonical order, capped per image."""
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"detections must be a list of COCO result dicts, got {type(detections).__name__}")
    payload = _PAYLOAD[iou_type]
    try:  # fast path: one comprehension per field; the loop below only runs to name a bad detection
        fields = [[d[k] for d in detections] for k in ("image_id", "category_id", "score", payload)]
    except (KeyError, TypeError, IndexError):
        for i, d in enumerate(detections):
            if not isinstance(d, Mapping):
                raise ValueError(f"detection #{i} is a {type(d).__name__}, not a COCO result dict") from None
            missing = [k for k in ("image_id", "category_id", "score", payload) if k not in d]
            if missing:
                raise ValueError(f"detection #{i} lacks {missing} (needed for iou_type={iou_type!r})") from None
        raise
    img = as_int_ids(fields[0], "detection image_id")
    cat = as_int_ids(fields[1], "detection category_id")
    unknown = set(img.tolist()) - {im["id"] for im in gt["images"]}
    if unknown:
        raise ValueError(f"detections refer to image_id(s) not in the ground truth: {_some(unknown)}")
    unknown = set(cat.tolist()) - {c["id"] for c in gt["categories"]}
    if unknown:
        raise ValueError(f"detections refer to category_id(s) not in the ground truth: {_some(unknown)}")

    def name(i):
        return f"detection #{i} (image_id {img[i]}, category_id {cat[i]})"

    try:
        scores = np.asarray(fields[2], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        i = next(i for i, v in enumerate(fields[2]) if not isinstance(v, (int, float, np.number)))
        raise ValueError(f"{name(i)}: score {fields[2][i]!r} is not a number") from None
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: score {scores[bad[0]]} is not finite")
    gt_ids = np.asarray([im["id"] for im in gt["images"]], dtype=np.int64)
    gt_wh = np.asarray([(float(im["width"]), float(im["height"])) for im in gt["images"]]).reshape(-1, 2)
    order = np.argsort(gt_ids)
    sizes = gt_wh[order[np.searchsorted(gt_ids[order], img)]]  # (N, 2) width, height of each detection's image

    if iou_type == "bbox":
        values = _float_rows(fields[3], 4, name, "bbox")
        _check_boxes(values, sizes, xyxy_tolerance, name)
        tiebreak = np.concatenate([cat[:, None], values], axis=1)
    elif iou_type == "keypoints":
        values = _float_rows(fields[3], 3 * num_keypoints, name, "keypoints")
        _check_finite(values, name, "keypoints")
        tiebreak = np.concatenate([cat[:, None], values], axis=1)
    else:
        values = [_rle(seg, sizes[i], name(i)) for i, seg in enumerate(fields[3])]
        counts = np.asarray([str(v["counts"]) for v in values] + [""], dtype=object)[:-1]
        rank = np.unique(counts, return_inverse=True)[1] if len(values) else np.zeros(0, np.int64)
        tiebreak = np.stack([cat, rank.reshape(-1)], axis=1)

    keep = top_per_image(img, scores, tiebreak, max_per_image)
    img_l, cat_l, score_l = img.tolist(), cat.tolist(), scores.tolist()
    rows = values.tolist() if isinstance(values, np.ndarray) else values
    return [{"image_id": img_l[i], "category_id": cat_l[i], payload: rows[i], "score": score_l[i]}
            for i in keep.tolist()]


def _rle(seg: Any, size_wh: np.ndarray, name: str) -> dict[str, Any]:
    """A detection's segmentation as a compressed RLE dict sized like its image (copied)."""
    from pycocotools import mask as mask_utils

    if not isinstance(seg, Mapping) or "size" not in seg or "counts" not in seg:
        raise ValueError(f"{name}: segmentation must be an RLE dict with 'size' and 'counts' "
                         "(encode masks with pycocotools.mask.encode)")
    h, w = (int(v) for v in seg["size"])
    if (w, h) != (int(size_wh[0]), int(size_wh[1])):
        raise ValueError(f"{name}: RLE size [h, w] = {[h, w]} differs from the image's "
                         f"[{int(size_wh[1])}, {int(size_wh[0])}]")
    if isinstance(seg["counts"], list):  # uncompressed RLE -> compressed
        return dict(mask_utils.frPyObjects({"size": [h, w], "counts": list(seg["counts"])}, h, w))
    counts = seg["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts)}


def check_options(iou_type: str, backend: str, max_per_image: Any, kpt_oks_sigmas: Any) -> int:
    """Validate the keyword options; returns the number of keypoints K (0 unless keypoints)."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if backend not in ("pycocotools", "faster"):
        raise ValueError(f"backend must be 'pycocotools' or 'faster', got {backend!r}")
    if max_per_image is not None and (isinstance(max_per_image, bool) or not isinstance(max_per_image, int)
                                      or max_per_image < 1):
        raise ValueError(f"max_per_image must be a positive int or None, got {max_per_image!r}")
    if iou_type != "keypoints":
        if kpt_oks_sigmas is not None:
            raise ValueError("kpt_oks_sigmas only applies to iou_type='keypoints'")
        return 0
    sigmas = COCO_KPT_OKS_SIGMAS if kpt_oks_sigmas is None else kpt_oks_sigmas
    arr = np.asarray(sigmas, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not all(math.isfinite(s) and s > 0 for s in arr.tolist()):
        raise ValueError(f"kpt_oks_sigmas must be a non-empty list of positive numbers, got {sigmas!r}")
    return int(arr.size)
