"""Hostile generated inputs for the Pix2Seq and Pix2SeqV2 cases (docs/design.md §8: what real inputs
look like and friendly generators never draw), and the reference-made inputs each case feeds to the
stages it does not test.

- image sizes: square, wide and tall, so that one axis reaches past the short side;
- boxes and keypoints as int64, int32, float32 or float64, in a Python list (maybe empty), an ndarray or
  a tensor; at least two objects per image unless emptiness is the point;
- grid inputs (image side a multiple of num_bins - 1, integer corners) decode EXACTLY, so a case can
  ask for equality rather than "within one bin" (truncating and rounding quantisers differ on a few
  grid positions only: `every_grid_position`);
- garbage rows built from special tokens at structured positions (EOS, PAD, BOS, task tokens,
  separator, invisible, a class token where a coordinate belongs and the reverse), PAD inside a row,
  rows without EOS, empty rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

CONTAINERS = ("list", "ndarray", "tensor")
DTYPES = ("int64", "int32", "float32", "float64")


def reference_for(api):
    """The reference pipeline on the implementation's vocabulary (fails the case if the special tokens are
    not in the family's order, since no reference-made input would then be well-formed)."""
    from cases.interface.pix2seq import reference_like

    ref = reference_like(api)
    got, want = (api.bos, api.eos, api.pad), (ref.bos, ref.eos, ref.pad)
    if tuple(int(t) for t in got) != want:
        pytest.fail(f"special tokens (BOS, EOS, PAD) = {got}, the family's layout puts them at {want} "
                    f"(after the {api.num_bins} bins and {api.num_classes} classes)", pytrace=False)
    return ref


def as_container(values, container: str, dtype: str = "float64"):
    """An array in one of the containers real code passes: a Python list, an ndarray or a tensor."""
    array = np.asarray(values).astype(dtype)
    if container == "list":
        return array.tolist()
    if container == "tensor":
        return torch.as_tensor(array)
    return array


@st.composite
def image_size(draw, num_bins: int, grid: bool = False):
    """(width, height): square, wide or tall. grid=True: multiples of num_bins - 1 (exact quantisation)."""
    shape = draw(st.sampled_from(["square", "wide", "tall"]))
    if grid:
        short, long_ = 1, draw(st.sampled_from([2, 3]))
        a, b = {"square": (short, short), "wide": (long_, short), "tall": (short, long_)}[shape]
        return (num_bins - 1) * a, (num_bins - 1) * b
    short = draw(st.integers(8, 480))
    long_ = short if shape == "square" else draw(st.integers(short + 1, 3 * short + 10))
    return (long_, short) if shape == "wide" else (short, long_)


@st.composite
def boxes_in(draw, width: int, height: int, min_objects: int = 2, max_objects: int = 6, step_x: int = 1,
             step_y: int = 1):
    """(N, 4) float64 xyxy with integer corners on multiples of (step_x, step_y), inside the image; the first
    box reaches the far end of the long axis (a coordinate beyond the short side)."""
    n = draw(st.integers(min_objects, max_objects))
    nx, ny = int(width // step_x), int(height // step_y)
    boxes = []
    while len(boxes) < n:
        x0, y0 = draw(st.integers(0, nx - 1)), draw(st.integers(0, ny - 1))
        x1, y1 = draw(st.integers(x0 + 1, nx)), draw(st.integers(y0 + 1, ny))
        if not boxes:
            x1, y1 = (nx, y1) if width >= height else (x1, ny)
        box = [x0 * step_x, y0 * step_y, x1 * step_x, y1 * step_y]
        if box not in boxes:  # two objects never share a box (a VOC-style matcher would miss one)
            boxes.append(box)
    return np.array(boxes, np.float64).reshape(-1, 4)


@st.composite
def hostile_objects(draw, num_bins: int, num_classes: int, min_objects: int = 2, max_objects: int = 6,
                    grid: bool = False):
    """(boxes, labels, width, height, boxes_f64 (N,4), labels_i64 (N,)): boxes and labels in a drawn
    container and dtype (an empty list when N = 0), plus the same values as plain arrays."""
    width, height = draw(image_size(num_bins, grid=grid))
    steps = (width // (num_bins - 1), height // (num_bins - 1)) if grid else (1, 1)
    boxes = draw(boxes_in(width, height, min_objects, max_objects, *steps))
    labels = np.array([draw(st.integers(0, num_classes - 1)) for _ in range(len(boxes))], np.int64)
    container, dtype = draw(st.sampled_from(CONTAINERS)), draw(st.sampled_from(DTYPES))
    if len(boxes) == 0 and container == "list":
        return [], [], width, height, boxes, labels
    label_dtype = "int64" if dtype.startswith("float") else dtype
    return (as_container(boxes, container, dtype), as_container(labels, container, label_dtype), width, height,
            boxes, labels)


def every_grid_position(num_bins: int, scale_x: int = 1, scale_y: int = 1) -> np.ndarray:
    """Boxes (2 * num_bins, 4) whose corners take every grid position of a (num_bins - 1) * scale image on
    both axes: [k, side-k, side, side] and [0, 0, k, side-k] for k = 0 .. num_bins - 1."""
    k = np.arange(num_bins, dtype=np.float64)
    side = num_bins - 1
    first = np.stack([k, side - k, np.full_like(k, side), np.full_like(k, side)], 1)
    second = np.stack([np.zeros_like(k), np.zeros_like(k), k, side - k], 1)
    return np.concatenate([first, second]) * np.array([scale_x, scale_y, scale_x, scale_y], np.float64)


@st.composite
def coco_ground_truth(draw, num_bins: int, num_classes: int, min_images: int = 2, max_images: int = 5,
                      min_objects: int = 2, max_objects: int = 5, grid: bool = True):
    """A COCO ground truth: shuffled image ids, square / wide / tall images, 1-based annotation ids in a
    shuffled order, non-contiguous category ids (label i = i-th category sorted by id). grid=True puts
    the images and boxes on the quantisation grid, so that encode -> decode is exact."""
    n_cats = draw(st.integers(1, min(num_classes, 4)))
    cat_ids = sorted(draw(st.lists(st.integers(1, 90), min_size=n_cats, max_size=n_cats, unique=True)))
    n_images = draw(st.integers(min_images, max_images))
    image_ids = draw(st.lists(st.integers(1, 10_000), min_size=n_images, max_size=n_images, unique=True))
    images, annotations = [], []
    for image_id in image_ids:
        width, height = draw(image_size(num_bins, grid=grid))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.png"})
        steps = (width // (num_bins - 1), height // (num_bins - 1)) if grid else (1, 1)
        for x0, y0, x1, y1 in draw(boxes_in(width, height, min_objects, max_objects, *steps)).tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cat_ids[draw(st.integers(0, n_cats - 1))],
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


def gt_detections(gt: dict, image_ids, container: str = "ndarray", scores=None) -> list[dict]:
    """The perfect detections of `image_ids`, straight from the ground truth (no quantisation), in a
    container; scores 1 unless `scores(image_id, n) -> (n,)` is given."""
    out = []
    for image_id in image_ids:
        boxes, labels = image_objects(gt, image_id)
        s = np.ones(len(labels)) if scores is None else np.asarray(scores(image_id, len(labels)), np.float64)
        out.append({"boxes": as_container(boxes, container), "labels": as_container(labels, container, "int64"),
                    "scores": as_container(s, container)})
    return out


def reference_rows(ref, gt: dict):
    """The perfect stand-in model's rows, made by the reference: every image's own ground-truth sequence
    with probability 1 -> (image_ids, tokens (B, max_len) long, token_probs (B, max_len) float64, sizes)."""
    image_ids, sequences, sizes = [], [], []
    for image in gt["images"]:
        boxes, labels = image_objects(gt, image["id"])
        image_ids.append(image["id"])
        sequences.append(ref.encode(boxes, labels, image["width"], image["height"]))
        sizes.append((image["width"], image["height"]))
    tokens = torch.as_tensor(ref.collate(sequences))
    return image_ids, tokens, torch.ones(tokens.shape, dtype=torch.float64), sizes


def reference_table(ref, gt: dict, image_ids=None, scores=None):
    """The reference's prediction table of the ground truth's own objects (exact boxes)."""
    ids = [im["id"] for im in gt["images"]] if image_ids is None else list(image_ids)
    return ref.prediction_table(ids, gt_detections(gt, ids, scores=scores), gt)


@st.composite
def garbage_row(draw, width: int, coords: range, classes: range, specials: dict, allow_empty: bool = True):
    """One row of `width` tokens a broken model could emit: the start token (specials["start"]), then
    objects of 5 whose slots hold either their kind or a special token (EOS, PAD, ... from `specials`), a
    class where a coordinate belongs or the reverse; then EOS (at an object boundary or not) or none,
    then PAD or more garbage. allow_empty=False: position 1 never holds EOS (the row is not [start, EOS])."""
    others = sorted(v for k, v in specials.items() if k != "start")
    row = [specials["start"]]
    wrong_kind = {"coord": classes, "class": coords}
    while len(row) < width:
        slot = (len(row) - 1) % 5
        kind = "class" if slot == 4 else "coord"
        choice = draw(st.sampled_from(["kind"] * 6 + ["special", "wrong", "end"]))
        if choice == "end" and (allow_empty or len(row) > 1):
            row.append(specials["eos"])
            break
        if choice == "special":
            token = draw(st.sampled_from(others))
            token = specials["pad"] if token == specials["eos"] and not allow_empty and len(row) == 1 else token
        elif choice == "wrong":
            token = draw(st.sampled_from(wrong_kind[kind]))
        elif slot in (2, 3) and row[-2] in coords:  # mostly upright boxes: xmax >= xmin, ymax >= ymin
            token = draw(st.integers(row[-2], coords[-1]))
        else:
            token = draw(st.sampled_from(classes if kind == "class" else coords))
        row.append(token)
    tail = draw(st.sampled_from(["pad", "garbage"]))
    while len(row) < width:
        row.append(specials["pad"] if tail == "pad" else draw(st.sampled_from([*coords[:3], *classes[:2], *others])))
    return row[:width]


def table_in_kept_container(api, gt: dict, image_ids, scores=None):
    """The implementation's prediction table of the ground truth's own detections, in the first container
    (list, ndarray, tensor) whose rows it keeps: a case about image ids or lost images then does not
    also fail for a container filter (bug 3 and its mirror image have their own case)."""
    table = None
    for container in ("list", "ndarray", "tensor"):
        table = api.prediction_table(list(image_ids), gt_detections(gt, image_ids, container, scores), gt)
        if len(table):
            return table
    return table
