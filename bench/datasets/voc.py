"""Pascal VOC detection reader: JPEGImages/, Annotations/*.xml, ImageSets/Main/<split>.txt under `root`.

Box convention. VOC XML stores 1-based inclusive pixel indices: a box covering 0-based pixel columns
a..b is written xmin = a + 1, xmax = b + 1. In continuous coordinates (pixel i covers [i, i+1)) that box
spans [a, b + 1] = [xmin - 1, xmax], so boxes are read as [xmin - 1, ymin - 1, xmax, ymax] (the
detectron2 convention) and the COCO width is xmax - xmin + 1.

Images get integer ids 1..n in split-file order (`file_ids[i]` holds the VOC name of image id i + 1);
labels are indices into `classes`. Objects marked difficult stay in the target (`difficult` bool array)
and become iscrowd = 1 in `to_coco()`, which COCOeval ignores (a detection on them is neither a hit nor a
false positive; note COCOeval's crowd IoU is intersection over the detection's area).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.datasets.coco import read_image

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{path}: missing <{tag}> in <{node.tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path) -> float:
    text = _text(node, tag, path)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: <{tag}> is not a number: {text!r}") from None


def parse_voc_xml(path: str | os.PathLike, classes: Sequence[str] = VOC_CLASSES) -> dict[str, Any]:
    """One annotation file -> {filename, width, height, boxes (N, 4) xyxy float32, labels (N,) int64,
    difficult (N,) bool}. ValueError naming the file for malformed XML, missing fields, unknown classes
    and boxes with xmax < xmin or ymax < ymin."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: malformed XML ({err})") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: missing <size>")
    boxes, labels, difficult = [], [], []
    for obj in root.findall("object"):
        name = _text(obj, "name", path)
        if name not in classes:
            raise ValueError(f"{path}: unknown class name {name!r}; expected one of {list(classes)}")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bnd, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"{path}: object {name!r} has an empty box {xmin, ymin, xmax, ymax}")
        boxes.append([xmin - 1.0, ymin - 1.0, xmax, ymax])  # 1-based inclusive -> continuous (module doc)
        labels.append(classes.index(name))
        diff = obj.find("difficult")
        difficult.append(diff is not None and (diff.text or "0").strip() == "1")
    filename = root.findtext("filename")
    return {
        "filename": filename.strip() if filename else None,
        "width": int(_number(size, "width", path)),
        "height": int(_number(size, "height", path)),
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "labels": np.array(labels, np.int64),
        "difficult": np.array(difficult, bool),
    }


class VocDetection:
    """Images and targets of one VOC split, in the CocoDetection target format (no polygons, K = 0)."""

    def __init__(self, root: str | os.PathLike, split: str = "val", classes: Sequence[str] = VOC_CLASSES):
        self.root = Path(root)
        self.split = split
        self.classes = tuple(classes)
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        for needed in (self.root / "JPEGImages", self.root / "Annotations"):
            if not needed.is_dir():
                raise FileNotFoundError(f"{needed}: VOC folder not found")
        if not split_file.is_file():
            raise FileNotFoundError(f"{split_file}: split file not found")
        self.file_ids: list[str] = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        self.image_ids: list[int] = list(range(1, len(self.file_ids) + 1))
        self.records = [parse_voc_xml(self.root / "Annotations" / f"{fid}.xml", self.classes) for fid in self.file_ids]
        self.categories = [{"id": i + 1, "name": name, "supercategory": "voc"} for i, name in enumerate(self.classes)]
        self.label_to_category_id = [c["id"] for c in self.categories]

    def __len__(self) -> int:
        return len(self.file_ids)

    def image_path(self, index: int) -> Path:
        rec = self.records[index]
        return self.root / "JPEGImages" / (rec["filename"] or f"{self.file_ids[index]}.jpg")

    def target(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        n = len(rec["labels"])
        return {"image_id": self.image_ids[index], "boxes": rec["boxes"].copy(), "labels": rec["labels"].copy(),
                "width": rec["width"], "height": rec["height"], "polygons": [[] for _ in range(n)],
                "keypoints": np.zeros((n, 0, 3), np.float32), "difficult": rec["difficult"].copy()}

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        path = self.image_path(index)
        image = read_image(path, self.file_ids[index])
        target = self.target(index)
        if image.shape[:2] != (target["height"], target["width"]):
            raise ValueError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but its XML says "
                             f"{target['width']}x{target['height']}")
        return image, target

    def to_coco(self) -> dict[str, Any]:
        """The split as a COCO ground-truth dict (ids from 1, bbox xywh, area w*h, difficult -> iscrowd 1)."""
        images, annotations = [], []
        for index, rec in enumerate(self.records):
            image_id = self.image_ids[index]
            images.append({"id": image_id, "file_name": self.image_path(index).name, "width": rec["width"],
                           "height": rec["height"], "voc_id": self.file_ids[index]})
            for (x0, y0, x1, y1), label, diff in zip(rec["boxes"].tolist(), rec["labels"].tolist(), rec["difficult"]):
                w, h = x1 - x0, y1 - y0
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": int(diff),
                                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
        return {"info": {"description": f"Pascal VOC {self.split} ({self.root})"}, "licenses": [],
                "images": images, "annotations": annotations, "categories": [dict(c) for c in self.categories]}
