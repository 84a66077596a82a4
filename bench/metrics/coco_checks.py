"""Pure helpers of the COCO evaluation: options, id spaces, the private ground-truth copy. Nothing here
imports pycocotools; bench/metrics/coco.py is the glue, bench/metrics/coco_dets.py prepares detections.

Three kinds of input problem (docs/design.md §5):
- input pycocotools refuses or gets wrong (NaN boxes match, iscrowd -1 overflows, polygons need image
  sizes, ...): ValueError naming the input, always;
- input pycocotools scores as given but that is probably a mistake (string ids, missing sizes,
  unknown ids, ...): `Findings.suspicious` - a CocoInputWarning by default, a ValueError in strict mode;
- ground-truth annotation ids 0 or repeated: pycocotools counts a match to id 0 as a miss
  (cocoapi #672) and merges repeated ids; the private copy numbers annotations 1..N, which is
  pycocotools' own result whenever the ids are unique and non-zero, and a warning says the number
  differs from a plain pycocotools call when they are not.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bench.metrics.coco_rle import check_rle

IOU_TYPES = ("bbox", "segm", "keypoints")
DET_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KPT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# pycocotools' default person-keypoint sigmas (17 keypoints), used when kpt_oks_sigmas is not given.
COCO_KPT_OKS_SIGMAS = tuple(np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                                      .87, .87, .89, .89]) / 10.0)
PAYLOAD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}
_SHOW = 8  # offending ids listed in a message


class CocoInputWarning(UserWarning):
    """Input that pycocotools scores as given but that is probably a mistake (strict mode: ValueError)."""


@dataclass
class Findings:
    """The suspicious-input messages of one evaluation; in strict mode the first one raises."""

    strict: bool = False
    messages: list[str] = field(default_factory=list)

    def suspicious(self, message: str) -> None:
        if self.strict:
            raise ValueError(f"{message} [refused: strict mode]")
        self.messages.append(message)


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


def some(ids: Sequence[Any]) -> str:
    """A short list of offending values for a message."""
    ids = sorted(set(ids), key=repr)
    more = f" and {len(ids) - _SHOW} more" if len(ids) > _SHOW else ""
    return f"{ids[:_SHOW]}{more}"


def integral(values: Sequence[Any]) -> np.ndarray | None:
    """(N,) int64 when every value is an integer (int, numpy int or integral float, not bool), else None."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        arr = np.asarray(values, dtype=object)
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.ndim == 1 and arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
        return arr.astype(np.int64)
    if arr.ndim == 1 and arr.dtype.kind == "O" and all(
            not isinstance(v, bool) and (isinstance(v, (int, np.integer))
                                         or (isinstance(v, (float, np.floating)) and float(v).is_integer()))
            for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64).reshape(-1)
    return None


@dataclass
class IdSpace:
    """The ids of one kind (image or category) of a ground truth and the ints the backends see.

    Integer ids are kept; string ids are numbered 1..n in sorted order, which is the order pycocotools
    gives them (it sorts imgIds and catIds), so the number does not change."""

    kind: str  # "int" or "str"
    internal: np.ndarray  # (n,) int64 sorted unique internal ids
    of_string: dict[str, int] = field(default_factory=dict)  # "str" only: original -> internal
    original: dict[int, Any] = field(default_factory=dict)  # internal -> original (for messages)

    def lookup(self, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(internal ids (N,) int64, known (N,) bool) of the given original ids."""
        if self.kind == "int":
            ints = integral(values)
            if ints is None:
                ok = [not isinstance(v, bool) and isinstance(v, (int, np.integer, float, np.floating))
                      and math.isfinite(v) and float(v).is_integer() for v in values]
                ints = np.asarray([int(v) if k else 0 for v, k in zip(values, ok)], dtype=np.int64).reshape(-1)
                known = np.asarray(ok, dtype=bool).reshape(-1)
            else:
                known = np.ones(len(ints), dtype=bool)
            pos = np.minimum(np.searchsorted(self.internal, ints), max(len(self.internal) - 1, 0))
            known &= self.internal[pos] == ints if len(self.internal) else False
            return ints, known
        ints = np.asarray([self.of_string.get(v, 0) if isinstance(v, str) else 0 for v in values],
                          dtype=np.int64).reshape(-1)
        return ints, ints > 0


def id_space(values: Sequence[Any], what: str, findings: Findings) -> tuple[IdSpace, np.ndarray]:
    """The id space of the ground truth's `what` ids and each entry's internal id (N,) int64."""
    ints = integral(values)
    if ints is not None:
        return IdSpace("int", np.unique(ints), original={int(i): int(i) for i in np.unique(ints)}), ints
    if all(isinstance(v, str) for v in values):
        order = sorted(set(values))
        of_string = {v: i + 1 for i, v in enumerate(order)}
        findings.suspicious(f"ground truth {what} ids are strings (e.g. {order[0]!r}); COCO uses integers. "
                            "pycocotools accepts them and orders them as strings, as done here")
        return (IdSpace("str", np.arange(1, len(order) + 1, dtype=np.int64), of_string,
                        {i: v for v, i in of_string.items()}),
                np.asarray([of_string[v] for v in values], dtype=np.int64))
    kinds = sorted({type(v).__name__ for v in values})
    raise ValueError(f"ground truth {what} ids must be all integers or all strings (pycocotools sorts them); "
                     f"got types {kinds}, e.g. {[v for v in values if not isinstance(v, (int, np.integer))][:3]!r}")


def float_rows(rows: Sequence[Any], width: int, name, what: str) -> np.ndarray:
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


def check_boxes(boxes: np.ndarray, name) -> None:
    """boxes (N, 4) xywh: finite, width and height >= 0 (pycocotools matches a NaN box to any object
    and silently drops boxes of negative size); name(i) describes item i in messages."""
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: bbox {boxes[bad[0]].tolist()} is not finite (NaN or inf)"
                         f"{f'; {bad.size - 1} more such boxes' if bad.size > 1 else ''}")
    bad = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: bbox {boxes[bad[0]].tolist()} has a negative width or height "
                         "(COCO boxes are x, y, w, h)"
                         f"{f'; {bad.size - 1} more such boxes' if bad.size > 1 else ''}")


def check_finite(values: np.ndarray, name, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: {what} contain NaN or inf")


def _records(obj: Mapping[str, Any], key: str) -> list:
    if key not in obj or not isinstance(obj[key], (list, tuple)):
        raise ValueError(f"ground truth lacks a '{key}' list (COCO format: images, annotations, categories)")
    return list(obj[key])


def _size(value: Any) -> float:
    """A usable image side (positive finite number) as float, else NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    return float(value) if math.isfinite(value) and value > 0 else math.nan


def _iscrowd(value: Any, name: str, findings: Findings) -> int:
    """iscrowd as pycocotools reads it (int(value), crowd when non-zero); missing/None -> 0."""
    if value is None or value is False:
        return 0
    if value is True:
        return 1
    ok = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    if not ok or value < 0:
        raise ValueError(f"{name}: iscrowd must be 0 or 1, got {value!r} (pycocotools "
                         f"{'overflows' if ok else 'fails'} on it)")
    if value > 1:
        findings.suspicious(f"{name}: iscrowd is {value!r}; pycocotools treats any non-zero value as a crowd")
    return int(value)


@dataclass
class GroundTruth:
    """The private ground-truth copy handed to the backends, and what the checks learned."""

    data: dict[str, Any]  # COCO dict: internal ids, annotations numbered 1..N
    images: IdSpace
    categories: IdSpace
    sizes: dict[int, tuple[float, float]]  # internal image id -> (width, height); NaN where unusable
    labels: dict[int, str]  # internal category id -> unique display name
    num_dropped: int = 0  # annotations of images or categories that are not listed (pycocotools skips them)


def prepare_ground_truth(gt: Mapping[str, Any], iou_type: str, num_keypoints: int,
                         findings: Findings) -> GroundTruth:
    """Validate a COCO ground truth and return a private copy safe to hand to pycocotools."""
    if not isinstance(gt, Mapping):
        raise ValueError(f"ground truth must be a COCO dict, got {type(gt).__name__}")
    images, anns, cats = _records(gt, "images"), _records(gt, "annotations"), _records(gt, "categories")
    if not images:
        raise ValueError("ground truth has no images: nothing to evaluate")
    for what, records in (("image", images), ("category", cats)):
        for i, r in enumerate(records):
            if not isinstance(r, Mapping) or "id" not in r:
                raise ValueError(f"ground truth {what} #{i} is not a dict with an 'id': {r!r}")
    image_space, image_ids = id_space([im["id"] for im in images], "image", findings)
    if not cats:
        raise ValueError("ground truth has no categories: nothing to evaluate")
    cat_space, cat_ids = id_space([c["id"] for c in cats], "category", findings)
    for what, ids, space in (("image", image_ids, image_space), ("category", cat_ids, cat_space)):
        if len(space.internal) < len(ids):
            dup = ids[np.flatnonzero(np.diff(np.sort(ids)) == 0)]
            findings.suspicious(f"ground truth lists {what} ids {some(space.original[int(i)] for i in dup)} "
                                "more than once; pycocotools keeps the last entry of each, as done here")
    last_image = {int(i): im for i, im in zip(image_ids, images)}  # the last entry of an id wins, as in pycocotools
    sizes = {i: (_size(im.get("width")), _size(im.get("height"))) for i, im in last_image.items()}
    last_cat = {int(i): c for i, c in zip(cat_ids, cats)}
    names = {i: str(c.get("name", cat_space.original[i])) for i, c in last_cat.items()}
    counts = {n: list(names.values()).count(n) for n in names.values()}
    labels = {i: (n if counts[n] == 1 else f"{n} (id {cat_space.original[i]})") for i, n in names.items()}

    payload = PAYLOAD[iou_type]
    need = ("image_id", "category_id", "area", payload) + (("bbox",) if iou_type == "keypoints" else ())
    for i, a in enumerate(anns):
        if not isinstance(a, Mapping):
            raise ValueError(f"ground truth annotation #{i} is a {type(a).__name__}, not a dict")
        missing = [k for k in need if k not in a]
        if missing:
            raise ValueError(f"ground truth annotation #{i} (id {a.get('id')}) lacks {missing} "
                             f"(needed for iou_type={iou_type!r})")
    a_img, img_ok = image_space.lookup([a["image_id"] for a in anns])
    a_cat, cat_ok = cat_space.lookup([a["category_id"] for a in anns])
    for ok, what, key in ((img_ok, "image", "image_id"), (cat_ok, "category", "category_id")):
        if not ok.all():
            findings.suspicious(f"{int((~ok).sum())} ground truth annotations refer to {what} ids not in the "
                                f"ground truth's list: {some(anns[j][key] for j in np.flatnonzero(~ok))}; "
                                "pycocotools never evaluates them, nor does this")
    keep = np.flatnonzero(img_ok & cat_ok)
    kept = [anns[j] for j in keep.tolist()]

    def name(j):
        return f"ground truth annotation #{int(keep[j])} (id {kept[j].get('id')})"

    try:
        areas = np.asarray([a["area"] for a in kept], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        j = next(j for j, a in enumerate(kept) if not isinstance(a["area"], (int, float, np.number)))
        raise ValueError(f"{name(j)}: area {kept[j]['area']!r} is not a number") from None
    bad = np.flatnonzero(~np.isfinite(areas) | (areas < 0))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: area {areas[bad[0]]} must be finite and >= 0")
    if iou_type in ("bbox", "keypoints") and kept:
        check_boxes(float_rows([a["bbox"] for a in kept], 4, name, "bbox"), name)
    if iou_type == "keypoints":
        check_finite(float_rows([a["keypoints"] for a in kept], 3 * num_keypoints, name, "keypoints"),
                     name, "keypoints")
    crowd = [_iscrowd(a.get("iscrowd"), name(j), findings) for j, a in enumerate(kept)]
    if iou_type == "segm":
        for j, a in enumerate(kept):
            _check_gt_segmentation(a["segmentation"], sizes[int(a_img[keep[j]])], name(j))
    _check_annotation_ids([a.get("id") for a in kept], findings)

    new_anns = []
    for j, a in enumerate(kept):
        i = int(keep[j])
        b = {"id": j + 1, "image_id": int(a_img[i]), "category_id": int(a_cat[i]), "area": float(areas[j]),
             "iscrowd": crowd[j], payload: _copied(a[payload])}
        if iou_type == "keypoints":
            b["bbox"] = _copied(a["bbox"])
            b["num_keypoints"] = a["num_keypoints"] if "num_keypoints" in a else int(
                np.count_nonzero(np.asarray(a["keypoints"], np.float64)[2::3] > 0))
        new_anns.append(b)
    new_images = [{"id": i, "width": last_image[i].get("width"), "height": last_image[i].get("height")}
                  for i in sorted(last_image)]
    new_cats = [{"id": i, "name": names[i]} for i in sorted(last_cat)]
    data = {"images": new_images, "annotations": new_anns, "categories": new_cats}
    return GroundTruth(data, image_space, cat_space, sizes, labels, num_dropped=len(anns) - len(kept))


def _copied(value: Any) -> Any:
    """A private copy: a flat list of numbers is copied shallowly (fast), anything else deeply."""
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return list(value)
    return copy.deepcopy(value)


def _check_gt_segmentation(seg: Any, size_wh: tuple[float, float], name: str) -> None:
    """Polygons (pycocotools needs the image size to rasterise them) or an RLE of the image's size."""
    if isinstance(seg, Mapping):
        h, w = check_rle(seg, name)
        if not math.isnan(size_wh[0]) and not math.isnan(size_wh[1]) and (w, h) != size_wh:
            raise ValueError(f"{name}: RLE size [h, w] = {[h, w]} differs from the image's "
                             f"[{size_wh[1]:g}, {size_wh[0]:g}]")
        return
    if not isinstance(seg, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in seg):
        raise ValueError(f"{name}: segmentation must be polygons [[x0, y0, x1, y1, ...], ...] or an RLE dict, "
                         f"got {type(seg).__name__}")
    for k, poly in enumerate(seg):
        try:
            values = np.asarray(poly, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: polygon #{k} must be numbers, got {poly!r}") from None
        if values.ndim != 1 or values.size % 2 or not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: polygon #{k} must be an even count of finite numbers (x, y pairs), "
                             f"got {values.size} values")
    if math.isnan(size_wh[0]) or math.isnan(size_wh[1]):
        raise ValueError(f"{name}: its image lacks a usable width/height, which pycocotools needs to "
                         "rasterise polygons")


def _check_annotation_ids(ids: list[Any], findings: Findings) -> None:
    """Warn where pycocotools' own number would differ from the renumbered copy's."""
    zero = [i for i, v in enumerate(ids) if not v]  # 0, None, "", missing: falsy ids
    seen, dup = set(), set()
    for v in ids:
        if v:
            try:
                (dup if v in seen else seen).add(v)
            except TypeError:  # unhashable id: pycocotools cannot index it either
                dup.add(repr(v))
    if zero:
        findings.suspicious(f"{len(zero)} ground truth annotations have id 0 or no id (e.g. annotation #{zero[0]}); "
                            "pycocotools counts a match to id 0 as a miss (cocoapi #672) and fails on a missing id. "
                            "Annotations are numbered 1..N here, so this number is NOT a plain pycocotools call's")
    if dup:
        findings.suspicious(f"ground truth annotation ids {some(dup)} repeat; pycocotools merges repeated ids "
                            "(one object counted twice, the other lost). Annotations are numbered 1..N here, so "
                            "this number is NOT a plain pycocotools call's")


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
