"""Hostile generated inputs for the Pix2SeqV2 cases (see cases/strategies.py for the principles): grid
polygons and keypoints on square, wide and tall images, the dataset's keypoint counts (17 for COCO, 5
for the generated dataset), garbage rows of each task, and a ground truth of every task with its
perfect predictions (the perfect stand-in model) for the export and evaluation cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from cases.strategies import as_container, image_size

KEYPOINT_COUNTS = (17, 5)  # COCO person, the generated dataset


def reference(api):
    from cases.interface.pix2seqv2 import reference_like

    return reference_like(api.token_layout)


def grid_size(ids):
    return image_size(ids["num_bins"], grid=True)


@st.composite
def grid_polygon(draw, ids, width, height, min_points=3, max_points=10):
    """A polygon (P, 2) with vertices on the quantisation grid of a (width, height) image."""
    n = draw(st.integers(min_points, max_points))
    sx, sy = width // (ids["num_bins"] - 1), height // (ids["num_bins"] - 1)
    xs = draw(st.lists(st.integers(0, ids["num_bins"] - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, ids["num_bins"] - 1), min_size=n, max_size=n))
    return np.stack([np.asarray(xs) * sx, np.asarray(ys) * sy], axis=1).astype(np.float64)


@st.composite
def grid_keypoints(draw, ids, width, height, count=None):
    """(K, 3) keypoints on the grid: K the dataset's count (17 or 5) unless given, v in {0, 1, 2}, some
    on the far edge of the long axis."""
    k = count if count is not None else draw(st.sampled_from(KEYPOINT_COUNTS))
    sx, sy = width // (ids["num_bins"] - 1), height // (ids["num_bins"] - 1)
    top = ids["num_bins"] - 1
    rows = [[draw(st.sampled_from([0, top, draw(st.integers(0, top))])) * sx,
             draw(st.sampled_from([0, top, draw(st.integers(0, top))])) * sy, draw(st.sampled_from([0, 1, 2, 2]))]
            for _ in range(k)]
    return np.array(rows, np.float64)


def box_of(points: np.ndarray) -> list[float]:
    """The xyxy box around (P, 2) points (a prompt box)."""
    return [float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())]


def contained(values, data, label="container"):
    """values in a drawn container and dtype (what real code passes to an encoder)."""
    container = data.draw(st.sampled_from(["list", "ndarray", "tensor"]), label=label)
    dtype = data.draw(st.sampled_from(["int64", "float32", "float64"]), label=label + " dtype")
    return as_container(values, container, dtype)


@st.composite
def garbage_row(draw, ids, task: str, max_len: int = 60):
    """A row a broken model could emit for `task`: its task token, then tokens of the task's kinds mixed
    with special tokens (EOS, PAD, BOS, the other task tokens, separator, invisible, classes, words) at
    any position, maybe EOS then anything, maybe no EOS, maybe nothing at all."""
    specials = [ids[k] for k in ("eos", "pad", "bos", "detection", "segmentation", "captioning", "keypoint",
                                 "invisible", "separator")]
    coords = st.integers(0, ids["num_bins"] - 1)
    classes = st.integers(ids["num_bins"], ids["num_bins"] + ids["num_classes"] - 1)
    words = st.integers(ids["word_start"], ids["word_start"] + 40)
    own = {"captioning": words, "keypoint": st.one_of(coords, st.just(ids["invisible"])),
           "segmentation": st.one_of(coords, st.just(ids["separator"]))}.get(task, coords)
    row = [ids[task]] if draw(st.booleans()) or task == "captioning" else []
    n = draw(st.integers(0, max_len))
    for _ in range(n):
        row.append(draw(st.one_of(own, own, own, st.sampled_from(specials), classes, coords, words)))
    if draw(st.booleans()):
        row.append(ids["eos"])
        row += draw(st.lists(st.one_of(st.just(ids["pad"]), own, st.sampled_from(specials)), max_size=6))
    return row


def ground_truth_all_tasks(ids, seed: int, images: int = 4, objects=(2, 4), keypoints: int = 17):
    """A COCO ground truth of every task on square, wide and tall grid images, with perfect predictions:
    (gt, captions_gt, predictions {task: per-image predictions}, image_ids). Annotations have bbox, area,
    grid polygons and keypoints; every object a distinct score."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    top = ids["num_bins"] - 1
    shapes = [(1, 1), (2, 1), (1, 2), (3, 1)]
    cats = [5, 9, 17][: max(1, min(3, ids["num_classes"]))]
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"class{c}",
                                                            "keypoints": [f"k{i}" for i in range(keypoints)]}
                                                           for c in cats]}
    caps = {"images": [], "annotations": []}
    preds = {"detection": [], "segmentation": [], "keypoint": [], "captioning": []}
    words = ["red", "blue", "green", "circle", "square", "star", "left", "of", "a", "the", "above", "big"]
    image_ids = []
    for i in range(images):
        sx, sy = shapes[i % len(shapes)]
        w, h = top * sx, top * sy
        image_id = int(100 + 13 * i)
        image_ids.append(image_id)
        gt["images"].append({"id": image_id, "width": w, "height": h})
        caps["images"].append({"id": image_id, "width": w, "height": h})
        det = {"boxes": [], "labels": [], "scores": []}
        segs, kps = [], []
        for _ in range(int(rng.integers(*objects, endpoint=True))):
            x0, y0 = rng.integers(0, top - 40, 2)
            x1, y1 = x0 + rng.integers(10, 40), y0 + rng.integers(10, 40)
            box = [float(x0 * sx), float(y0 * sy), float(x1 * sx), float(y1 * sy)]
            poly = np.array([[x0, y0], [x1, y0], [x1, y1], [(x0 + x1) // 2, y1 + 0], [x0, (y0 + y1) // 2]],
                            np.float64) * [sx, sy]
            kp = np.column_stack([rng.integers(x0, x1 + 1, keypoints) * sx, rng.integers(y0, y1 + 1, keypoints) * sy,
                                  rng.choice([0, 2, 2, 2], keypoints)]).astype(np.float64)
            kp[kp[:, 2] == 0, :2] = 0
            label = int(rng.integers(0, len(cats)))
            score = float(rng.uniform(0.1, 1.0))
            rle = mask_utils.merge(mask_utils.frPyObjects([poly.reshape(-1).tolist()], h, w))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": cats[label],
                                      "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                      "area": float(mask_utils.area(rle)), "iscrowd": 0,
                                      "segmentation": [poly.reshape(-1).tolist()],
                                      "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum())})
            det["boxes"].append(box)
            det["labels"].append(label)
            det["scores"].append(score)
            segs.append({"label": label, "score": score, "polygons": [poly.reshape(-1).tolist()]})
            kps.append({"label": label, "score": score, "keypoints": kp})
        preds["detection"].append({k: np.asarray(v) for k, v in det.items()})
        preds["segmentation"].append(segs)
        preds["keypoint"].append(kps)
        refs = [" ".join(rng.choice(words, int(rng.integers(5, 9)))) for _ in range(3)]
        for r in refs:
            caps["annotations"].append({"id": len(caps["annotations"]) + 1, "image_id": image_id, "caption": r.capitalize() + "."})
        preds["captioning"].append(refs[0])
    return gt, caps, preds, image_ids


class Lazy:
    """A fixture value made on first use, inside the case: a missing part then fails the case itself (named,
    with the bug or invariant it stands for) rather than its setup."""

    def __init__(self, make) -> None:
        self._make, self._value = make, None

    def _get(self):
        if self._value is None:
            self._value = self._make()
        return self._value

    def __getitem__(self, key):
        return self._get()[key]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)


def once(make):
    """A function returning make()'s value, computed on the first call (inside a case) and kept."""
    cache = []

    def get():
        if not cache:
            cache.append(make())
        return cache[0]

    return get


@pytest.fixture(scope="module")
def ids(api):
    """The implementation's fixed token ids (num_bins, eos, task tokens, ...), read inside the case (a case
    module imports this fixture)."""
    return Lazy(lambda: dict(api.token_layout))


@pytest.fixture(scope="module")
def ref(api):
    """The reference on the implementation's token layout, made inside the case."""
    return Lazy(lambda: reference(api))
