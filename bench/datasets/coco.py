"""COCO-format detection reader (real COCO2017 and the generated dataset go through this same code).

Target of one image:
    image_id   int
    boxes      float32 (N, 4) xyxy in pixels (COCO bbox [x, y, w, h] -> [x, y, x + w, y + h])
    labels     int64 (N,) in [0, C): label i is the i-th category sorted by id
    width, height  int, from the image entry of the JSON
    polygons   list of N lists of float32 (P, 2) arrays (empty list for an RLE segmentation)
    keypoints  float32 (N, K, 3) x, y, v with K the longest category keypoint list (zeros where absent)
Crowd annotations (iscrowd = 1) and boxes with non-positive width or height are left out of the target;
`gt` keeps everything for evaluation.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO

from bench.storage import read_json


def _require(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {message}")


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a COCO instances file. FileNotFoundError / ValueError naming the file and the problem
    (malformed JSON with its position, missing sections, duplicate ids, references to unknown images or
    categories, keypoint lists of the wrong length)."""
    path = Path(path)
    data = read_json(path)
    _require(isinstance(data, dict), path, "top level is not a JSON object")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(data.get(key), list), path, f"missing or non-list {key!r} section")
    image_ids = set()
    for img in data["images"]:
        _require(isinstance(img, dict) and all(k in img for k in ("id", "file_name", "width", "height")),
                 path, f"image entry {img!r:.120} lacks id/file_name/width/height")
        _require(img["id"] not in image_ids, path, f"duplicate image id {img['id']}")
        for side in ("width", "height"):
            value = img[side]
            _require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                     and float(value).is_integer(), path,
                     f"image id {img['id']}: {side} must be a positive whole number of pixels, got {value!r}")
        name = img["file_name"]
        _require(isinstance(name, str) and name and not Path(name).is_absolute()
                 and ".." not in Path(name).parts, path,
                 f"image id {img['id']}: file_name {name!r} must be a relative path inside the images folder")
        image_ids.add(img["id"])
    kp_len = {}
    for cat in data["categories"]:
        _require(isinstance(cat, dict) and "id" in cat and "name" in cat, path, f"category {cat!r:.120} lacks id/name")
        _require(cat["id"] not in kp_len, path, f"duplicate category id {cat['id']}")
        kp_len[cat["id"]] = len(cat.get("keypoints", []))
    ann_ids = set()
    for ann in data["annotations"]:
        _require(isinstance(ann, dict) and all(k in ann for k in ("id", "image_id", "category_id", "bbox")),
                 path, f"annotation {ann!r:.120} lacks id/image_id/category_id/bbox")
        aid = ann["id"]
        _require(aid not in ann_ids, path, f"duplicate annotation id {aid}")
        ann_ids.add(aid)
        _require(ann["image_id"] in image_ids, path, f"annotation {aid} refers to unknown image id {ann['image_id']}")
        _require(ann["category_id"] in kp_len, path,
                 f"annotation {aid} refers to unknown category id {ann['category_id']}")
        _require(isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4, path, f"annotation {aid}: bbox is not [x, y, w, h]")
        if "keypoints" in ann:
            n = len(ann["keypoints"])
            _require(n % 3 == 0 and n // 3 <= max(kp_len.values(), default=0), path,
                     f"annotation {aid}: {n} keypoint values do not fit the categories' keypoint names")
    return data


def coco_from_dict(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO object over `data` (no file read, index messages silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read_image(path: Path, image_id: int | str) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB; FileNotFoundError / ValueError naming the file and image id."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file of image id {image_id} not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode the image file of image id {image_id}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class CocoDetection:
    """Images and detection targets of one COCO split. `__getitem__(i) -> (image, target)`, see module doc."""

    def __init__(self, images_dir: str | os.PathLike, instances_json: str | os.PathLike):
        self.images_dir = Path(images_dir)
        self.instances_json = Path(instances_json)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"{self.images_dir}: image folder not found")
        self.gt: dict[str, Any] = load_coco_json(self.instances_json)
        self.coco = coco_from_dict(self.gt)
        self.categories: list[dict[str, Any]] = sorted(self.gt["categories"], key=lambda c: c["id"])
        self.label_to_category_id: list[int] = [c["id"] for c in self.categories]
        self.category_id_to_label: dict[int, int] = {cid: i for i, cid in enumerate(self.label_to_category_id)}
        self.class_names: list[str] = [c["name"] for c in self.categories]
        self.num_keypoints = max((len(c.get("keypoints", [])) for c in self.categories), default=0)
        self.image_ids: list[int] = sorted(self.coco.imgs)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self.coco.imgs[image_id]["file_name"]

    def check_files(self) -> None:
        """FileNotFoundError naming the first image file (and its id) that is missing."""
        for image_id in self.image_ids:
            path = self.image_path(image_id)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image file of image id {image_id} not found")

    def target(self, image_id: int) -> dict[str, Any]:
        """The target of `image_id` without reading the image."""
        info = self.coco.imgs[image_id]
        anns = [a for a in self.coco.imgToAnns.get(image_id, [])
                if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32).reshape(-1, 4)
        labels = np.array([self.category_id_to_label[a["category_id"]] for a in anns], np.int64)
        keypoints = np.zeros((len(anns), self.num_keypoints, 3), np.float32)
        polygons = []
        for i, a in enumerate(anns):
            kp = np.asarray(a.get("keypoints", []), np.float32).reshape(-1, 3)  # (k, 3)
            keypoints[i, : len(kp)] = kp
            seg = a.get("segmentation", [])
            polygons.append([np.asarray(p, np.float32).reshape(-1, 2) for p in seg] if isinstance(seg, list) else [])
        return {"image_id": image_id, "boxes": boxes, "labels": labels, "width": int(info["width"]),
                "height": int(info["height"]), "polygons": polygons, "keypoints": keypoints}

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image_id = self.image_ids[index]
        image = read_image(self.image_path(image_id), image_id)
        info = self.coco.imgs[image_id]
        if image.shape[:2] != (int(info["height"]), int(info["width"])):
            raise ValueError(f"{self.image_path(image_id)}: image id {image_id} is {image.shape[1]} x {image.shape[0]} "
                             f"px but {self.instances_json} says {info['width']} x {info['height']}; boxes would "
                             "be scaled wrongly (fix the JSON or the file)")
        return image, self.target(image_id)


def read_captions(captions_json: str | os.PathLike) -> dict[int, list[str]]:
    """COCO captions file -> {image id: captions in annotation order} (every listed image, possibly [])."""
    path = Path(captions_json)
    data = read_json(path)
    _require(isinstance(data, dict), path, "top level is not a JSON object")
    for key in ("images", "annotations"):
        _require(isinstance(data.get(key), list), path, f"missing or non-list {key!r} section")
    out: dict[int, list[str]] = {}
    for img in data["images"]:
        _require(isinstance(img, dict) and "id" in img, path, f"image entry {img!r:.120} lacks an id")
        out[img["id"]] = []
    for ann in data["annotations"]:
        _require(isinstance(ann, dict) and "image_id" in ann and "caption" in ann, path,
                 f"caption entry {ann!r:.120} lacks image_id/caption")
        _require(ann["image_id"] in out, path, f"caption {ann.get('id')} refers to unknown image id {ann['image_id']}")
        _require(isinstance(ann["caption"], str), path, f"caption {ann.get('id')} is not a string")
        out[ann["image_id"]].append(ann["caption"])
    return out
