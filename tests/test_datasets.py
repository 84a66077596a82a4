"""Generated dataset (determinism, geometry, honest keypoints and captions) and the COCO / VOC readers."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import bench.datasets.synthetic as synthetic
from bench.datasets import (
    KEYPOINT_NAMES,
    KEYPOINT_SIGMAS,
    SHAPES,
    VOC_CLASSES,
    CocoDetection,
    DatasetPaths,
    SyntheticConfig,
    VocDetection,
    default_dataset,
    generate_dataset,
    read_captions,
)
from bench.datasets.synthetic_captions import CaptionObject, make_captions
from bench.datasets.synthetic_shapes import extreme_keypoints, polygon_centroid, shape_vertices

TINY = SyntheticConfig(seed=7, num_train=8, num_val=4, image_size=96, min_size=12, max_size=40)
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> DatasetPaths:
    return generate_dataset(tmp_path_factory.mktemp("tiny"), TINY)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _instances(paths: DatasetPaths, split: str) -> dict:
    return json.loads(paths.instances_json(split).read_text())


# ----------------------------------------------------------------------------------------- generator


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    again = generate_dataset(tmp_path / "again", TINY)
    assert _files(again.root) == _files(tiny.root)
    assert again.fingerprint == tiny.fingerprint
    other = generate_dataset(tmp_path / "other", replace(TINY, seed=8))
    assert other.fingerprint != tiny.fingerprint
    a, b = _files(tiny.root), _files(other.root)
    assert all(a[k] != b[k] for k in a if k.endswith(".png"))


def test_val_images_do_not_depend_on_train_size(tiny, tmp_path):
    other = generate_dataset(tmp_path / "more", replace(TINY, num_train=3))
    assert _files(other.images_dir("val")) == _files(tiny.images_dir("val"))


# Content hash of TINY (decoded pixels + annotation JSON text, independent of the PNG encoder's bytes).
# When the generator's output changes on purpose, bump GENERATOR_VERSION and update both values here.
PINNED = (3, "49a9f079f6b314e9")


def _content_hash(paths: DatasetPaths) -> str:
    digest = hashlib.sha256()
    for split in ("train", "val"):
        for png in sorted(paths.images_dir(split).glob("*.png")):
            digest.update(png.name.encode() + cv2.imread(str(png), cv2.IMREAD_UNCHANGED).tobytes())
        digest.update(paths.instances_json(split).read_bytes() + paths.captions_json(split).read_bytes())
    return digest.hexdigest()[:16]


def test_output_change_bumps_generator_version(tiny):
    assert (synthetic.GENERATOR_VERSION, _content_hash(tiny)) == PINNED, (
        "the generated data changed: bump GENERATOR_VERSION (it keys the cache) and update PINNED")


def test_layout_counts_and_ids(tiny):
    for split, n in (("train", TINY.num_train), ("val", TINY.num_val)):
        inst = _instances(tiny, split)
        assert len(inst["images"]) == n == len(list(tiny.images_dir(split).glob("*.png")))
        assert [c["name"] for c in inst["categories"]] == list(TINY.classes)
        assert all(c["keypoints"] == list(KEYPOINT_NAMES) for c in inst["categories"])
        ids = [a["id"] for a in inst["annotations"]]
        assert min(ids) >= 1 and len(set(ids)) == len(ids)
        per_image = Counter(a["image_id"] for a in inst["annotations"])
        assert all(TINY.min_objects <= per_image[i["id"]] <= TINY.max_objects for i in inst["images"])
    train_ids = {i["id"] for i in _instances(tiny, "train")["images"]}
    assert train_ids.isdisjoint(i["id"] for i in _instances(tiny, "val")["images"])


def test_boxes_polygons_keypoints_agree(tiny):
    for ann in _instances(tiny, "train")["annotations"]:
        x, y, w, h = ann["bbox"]
        poly = np.array(ann["segmentation"][0]).reshape(-1, 2)
        assert poly[:, 0].min() == x and poly[:, 0].max() == x + w
        assert poly[:, 1].min() == y and poly[:, 1].max() == y + h
        assert ann["area"] == pytest.approx(cv2.contourArea(poly.astype(np.float32)), abs=1e-6)
        kp = np.array(ann["keypoints"]).reshape(-1, 3)
        assert kp.shape == (len(KEYPOINT_NAMES), 3) and ann["num_keypoints"] == len(KEYPOINT_NAMES)
        assert np.all((kp[:, 0] >= x) & (kp[:, 0] <= x + w) & (kp[:, 1] >= y) & (kp[:, 1] <= y + h))
        _, top, bottom, left, right = kp
        assert (top[1], bottom[1], left[0], right[0]) == (y, y + h, x, x + w)
        vertices = {tuple(p) for p in poly.tolist()}
        assert all(tuple(p[:2]) in vertices for p in (top, bottom, left, right))
        assert cv2.pointPolygonTest(poly.astype(np.float32), (float(kp[0, 0]), float(kp[0, 1])), False) > 0


def test_drawn_pixels_match_annotations(tiny):
    """Read back through the reader: the rasterised polygon of the last-drawn shape is painted in its
    colour, every shape keeps >= min_visible of its polygon, and v = 2 exactly where the keypoint pixel
    shows the shape's own colour (RGB order checked against PIL's decoder)."""
    palette = dict(TINY.palette)
    ds = CocoDetection(tiny.images_dir("train"), tiny.instances_json("train"))
    for index, image_id in enumerate(ds.image_ids):
        image, target = ds[index]
        assert np.array_equal(image, np.asarray(Image.open(ds.image_path(image_id)).convert("RGB")))
        anns = sorted(ds.coco.imgToAnns[image_id], key=lambda a: a["id"])  # drawing order
        for k, ann in enumerate(anns):
            own = np.all(image == palette[ann["colour"]], axis=-1)
            m = ds.coco.annToMask(ann).astype(bool)
            if k == len(anns) - 1:
                assert own[m].all()
            assert own[m].mean() >= TINY.min_visible - 0.1
            for x, y, v in np.array(ann["keypoints"]).reshape(-1, 3):
                assert v == (2 if own[int(math.floor(y)), int(math.floor(x))] else 1)


COLOURS = {name for name, _ in TINY.palette}
RELATIONS = {"to the left of": lambda a, b: a[2] < b[2], "to the right of": lambda a, b: a[2] > b[2],
             "above": lambda a, b: a[3] < b[3], "below": lambda a, b: a[3] > b[3]}


def _check_caption(text: str, objs: list[tuple[str, str, float, float]]) -> None:
    """Assert that `text` is true of `objs` = [(colour, shape, cx, cy)]: only present colours and shapes,
    exact plural counts, and a stated relation holds for some pair with those descriptions."""
    words = [w.strip(",") for w in text.split()]
    assert set(words) & COLOURS <= {o[0] for o in objs}, text
    assert {w[:-1] if w[:-1] in SHAPES else w for w in words} & set(SHAPES) <= {o[1] for o in objs}, text
    for num, colour, shape in re.findall(r"\b(two|three|four|five) (?:(\w+) )?(\w+)s\b", text):
        if shape == "shape":
            want = len(objs) if not colour else sum(o[0] == colour for o in objs)
        else:
            want = sum(o[1] == shape and (not colour or o[0] == colour) for o in objs)
        assert NUMBERS[num] == want, text
    rel = re.search(r"an? (\w+) (\w+) (to the left of|to the right of|above|below) (?:an?|another) (\w+) (\w+)", text)
    if rel:
        c1, s1, how, c2, s2 = rel.groups()
        assert any(RELATIONS[how](a, b) for a in objs for b in objs
                   if a is not b and a[:2] == (c1, s1) and b[:2] == (c2, s2)), text


def test_captions_are_true(tiny):
    inst = _instances(tiny, "train")
    caps = read_captions(tiny.captions_json("train"))
    objects: dict[int, list] = {i["id"]: [] for i in inst["images"]}
    for a in inst["annotations"]:
        cx, cy = a["keypoints"][0], a["keypoints"][1]
        objects[a["image_id"]].append((a["colour"], TINY.classes[a["category_id"] - 1], cx, cy))
    for image_id, objs in objects.items():
        texts = caps[image_id]
        assert len(texts) == TINY.captions_per_image == len(set(texts))
        for text in texts:
            _check_caption(text, objs)


@settings(max_examples=50)
@given(objs=st.lists(st.tuples(st.sampled_from(sorted(COLOURS)), st.sampled_from(sorted(SHAPES)),
                               st.integers(0, 127), st.integers(0, 127), st.integers(20, 900)),
                     min_size=1, max_size=6),
       background=st.sampled_from(["plain", "gradient", "noisy"]), seed=st.integers(0, 2**32 - 1))
def test_caption_grammar_is_true(objs, background, seed):
    caption_objs = [CaptionObject(c, s, x + 0.5, y + 0.5, area) for c, s, x, y, area in objs]
    texts = make_captions(caption_objs, background, 128, np.random.default_rng(seed), count=5)
    assert len(texts) == 5 and all(texts)
    for text in texts:
        _check_caption(text, [(c, s, x + 0.5, y + 0.5) for c, s, x, y, _ in objs])


def test_reader_round_trip(tiny):
    inst = _instances(tiny, "val")
    ds = CocoDetection(tiny.images_dir("val"), tiny.instances_json("val"))
    assert len(ds) == TINY.num_val and ds.image_ids == sorted(i["id"] for i in inst["images"])
    assert ds.label_to_category_id == [1, 2, 3, 4] and ds.gt == inst
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (TINY.image_size, TINY.image_size, 3) and image.dtype == np.uint8
        anns = [a for a in inst["annotations"] if a["image_id"] == t["image_id"]]
        xywh = np.array([a["bbox"] for a in anns], np.float32)
        assert np.array_equal(t["boxes"], np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        assert t["labels"].tolist() == [a["category_id"] - 1 for a in anns] and t["labels"].dtype == np.int64
        assert t["keypoints"].shape == (len(anns), len(KEYPOINT_NAMES), 3)
        assert np.allclose(t["keypoints"].reshape(len(anns), -1), [a["keypoints"] for a in anns])
        assert [p[0].ravel().tolist() for p in t["polygons"]] == [a["segmentation"][0] for a in anns]


def test_default_dataset_is_cached(tmp_path, monkeypatch):
    cfg = replace(TINY, num_train=2, num_val=1)
    first = default_dataset(tmp_path, cfg)
    assert first.root.parent == tmp_path and cfg.hash() in first.root.name
    monkeypatch.setattr(synthetic, "_write_dataset", lambda *a: pytest.fail("regenerated a cached dataset"))
    assert default_dataset(tmp_path, cfg) == first
    monkeypatch.setenv("VSBENCH_DATA_DIR", str(tmp_path))
    assert default_dataset(config=cfg) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name]  # no staging folder left behind
    first.verify()
    next(first.images_dir("train").glob("*.png")).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="modified"):
        first.verify()


@pytest.mark.parametrize("change, message", [
    ({"classes": ("circle", "blob")}, "classes"), ({"min_size": 50, "max_size": 40}, "min_size"),
    ({"min_objects": 3, "max_objects": 2}, "min_objects"), ({"min_visible": 1.5}, "min_visible"),
    ({"palette": (("red", (1, 2, 3)), ("red", (4, 5, 6)))}, "palette"),
])
def test_bad_config(change, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**change)


@settings(max_examples=40)
@given(shape=st.sampled_from(sorted(SHAPES)), radius=st.floats(6, 30), angle=st.floats(0, 7),
       cx=st.floats(32, 40), cy=st.floats(32, 40))
def test_polygon_is_the_drawn_outline(shape, radius, angle, cx, cy):
    """COCO polygon = OpenCV vertices + 0.5: pycocotools' rasterisation stays inside the drawn pixels
    and covers most of them (fillPoly also paints the boundary)."""
    verts = shape_vertices(shape, cx, cy, radius, angle)
    drawn = np.zeros((80, 80), np.uint8)
    cv2.fillPoly(drawn, [verts], 1)
    rle = mask_utils.frPyObjects([(verts + 0.5).ravel().tolist()], 80, 80)
    coco_mask = mask_utils.decode(rle)[..., 0].astype(bool)
    assert not np.any(coco_mask & ~drawn.astype(bool))
    assert coco_mask.sum() >= 0.5 * drawn.sum()
    kp = extreme_keypoints(verts.astype(np.float64))
    assert drawn[int(round(kp[0, 1])), int(round(kp[0, 0]))] == 1  # the centre is on the shape
    assert polygon_centroid(verts.astype(np.float64)) == tuple(kp[0])


# ------------------------------------------------------------------------------------- COCO reader


def _write_coco_fixture(tmp_path: Path) -> tuple[Path, Path, dict]:
    images = tmp_path / "images"
    images.mkdir()
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    cv2.imwrite(str(images / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(images / "b.png"), np.zeros((10, 10, 3), np.uint8))
    gt = {
        "images": [{"id": 42, "file_name": "a.png", "width": 30, "height": 20},
                   {"id": 7, "file_name": "b.png", "width": 10, "height": 10}],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 1, "name": "person", "keypoints": ["nose", "eye"]},
                       {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 90, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0,
             "segmentation": [[1, 2, 11, 2, 11, 7]]},
            {"id": 2, "image_id": 42, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]], "keypoints": [1, 1, 2, 3, 3, 1], "num_keypoints": 2},
            {"id": 3, "image_id": 42, "category_id": 3, "bbox": [5, 5, 8, 8], "area": 64, "iscrowd": 1,
             "segmentation": {"counts": [0, 600], "size": [20, 30]}},
        ],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(gt))
    return images, ann, gt


def test_coco_fixture(tmp_path):
    images, ann, gt = _write_coco_fixture(tmp_path)
    ds = CocoDetection(images, ann)
    assert ds.image_ids == [7, 42] and ds.label_to_category_id == [1, 3, 90]
    assert ds.class_names == ["person", "car", "zebra"] and len(ds.gt["annotations"]) == 3
    image, t = ds[1]
    assert image.shape == (20, 30, 3) and image[0, 0].tolist() == [200, 0, 0]
    assert (t["image_id"], t["width"], t["height"]) == (42, 30, 20)
    assert t["boxes"].tolist() == [[1, 2, 11, 7], [0, 0, 4, 4]]  # crowd left out
    assert t["labels"].tolist() == [2, 0]
    assert t["keypoints"].tolist() == [[[0, 0, 0], [0, 0, 0]], [[1, 1, 2], [3, 3, 1]]]
    assert t["polygons"][0][0].tolist() == [[1, 2], [11, 2], [11, 7]]
    _, empty = ds[0]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["keypoints"].shape == (0, 2, 3)


def test_coco_errors(tmp_path):
    images, ann, gt = _write_coco_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CocoDetection(tmp_path / "nowhere", ann)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDetection(images, tmp_path / "missing.json")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(ann.read_text()[:50])
    with pytest.raises(ValueError, match=r"truncated.json: malformed JSON at line 1 column"):
        CocoDetection(images, truncated)
    for mutate, message in [
        (lambda g: g["annotations"][0].update(image_id=999), "annotation 1 refers to unknown image id 999"),
        (lambda g: g["annotations"][1].update(category_id=5), "annotation 2 refers to unknown category id 5"),
        (lambda g: g.pop("categories"), "'categories'"),
        (lambda g: g["annotations"][1].update(keypoints=[1, 2]), "annotation 2: 2 keypoint values"),
    ]:
        bad = json.loads(json.dumps(gt))
        mutate(bad)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=re.escape(message)):
            CocoDetection(images, path)
    (images / "a.png").unlink()
    ds = CocoDetection(images, ann)
    with pytest.raises(FileNotFoundError, match=r"a\.png: image file of image id 42"):
        ds[1]
    with pytest.raises(FileNotFoundError, match="image id 42"):
        ds.check_files()
    (images / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode .* image id 42"):
        ds[1]


def test_read_captions_and_errors(tiny, tmp_path):
    caps = read_captions(tiny.captions_json("val"))
    assert sorted(caps) == sorted(i["id"] for i in _instances(tiny, "val")["images"])
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"images": [{"id": 1}, {"id": 2}],
                                "annotations": [{"id": 1, "image_id": 1, "caption": "x"},
                                                {"id": 2, "image_id": 1, "caption": "y"}]}))
    assert read_captions(path) == {1: ["x", "y"], 2: []}
    path.write_text(json.dumps({"images": [{"id": 1}], "annotations": [{"id": 9, "image_id": 3, "caption": "x"}]}))
    with pytest.raises(ValueError, match="caption 9 refers to unknown image id 3"):
        read_captions(path)
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="caps.json: malformed JSON"):
        read_captions(path)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_captions(tmp_path / "absent.json")


# -------------------------------------------------------------------------------------- VOC reader

VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = ("<object><name>{cls}</name><difficult>{diff}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
           "<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")


def _write_voc_fixture(root: Path, objects: dict[str, list]) -> Path:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, objs in objects.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.full((30, 40, 3), 128, np.uint8))
        body = "".join(VOC_OBJ.format(cls=c, diff=d, b=b) for c, d, b in objs)
        (root / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, objects=body))
    (root / "ImageSets/Main/val.txt").write_text("".join(f"{n}\n" for n in objects))
    return root


def test_voc_fixture_and_coco_export(tmp_path):
    root = _write_voc_fixture(tmp_path, {
        "2007_000001": [("dog", 0, (1, 1, 10, 20)), ("person", 1, (5, 6, 7, 8))],
        "2007_000002": [("tvmonitor", 0, (11, 3, 40, 30))],
    })
    ds = VocDetection(root, "val")
    assert len(ds) == 2 and ds.file_ids == ["2007_000001", "2007_000002"]
    image, t = ds[0]
    assert image.shape == (30, 40, 3) and (t["width"], t["height"], t["image_id"]) == (40, 30, 1)
    assert t["boxes"].tolist() == [[0, 0, 10, 20], [4, 5, 7, 8]]  # 1-based inclusive -> [xmin-1, ymin-1, xmax, ymax]
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert t["difficult"].tolist() == [False, True] and t["keypoints"].shape == (2, 0, 3)
    gt = ds.to_coco()
    assert gt["annotations"][0]["bbox"] == [0, 0, 10, 20] and gt["annotations"][0]["area"] == 200
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1, 0]
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dets = [{"image_id": 1, "category_id": VOC_CLASSES.index("dog") + 1, "bbox": [0, 0, 10, 20], "score": 0.9},
            {"image_id": 2, "category_id": VOC_CLASSES.index("tvmonitor") + 1, "bbox": [10, 2, 30, 28], "score": 0.8}]
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # the difficult person is ignored, not missed


def test_voc_errors(tmp_path):
    root = _write_voc_fixture(tmp_path / "a", {"x1": [("unicorn", 0, (1, 1, 5, 5))]})
    with pytest.raises(ValueError, match=r"x1\.xml: unknown class name 'unicorn'"):
        VocDetection(root)
    root = _write_voc_fixture(tmp_path / "b", {"x2": [("dog", 0, (1, 1, 5, 5))]})
    (root / "Annotations" / "x2.xml").write_text("<annotation><size><width>4</width>")
    with pytest.raises(ValueError, match=r"x2\.xml: malformed XML"):
        VocDetection(root)
    with pytest.raises(FileNotFoundError, match="train.txt"):
        VocDetection(root, "train")
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        VocDetection(tmp_path / "nothing")
    root = _write_voc_fixture(tmp_path / "c", {"x3": [("dog", 0, (1, 1, 5, 5))]})
    (root / "Annotations" / "x4.xml").write_text((root / "Annotations" / "x3.xml").read_text().replace("x3.jpg", "x4.jpg"))
    (root / "ImageSets/Main/val.txt").write_text("x3\nx4\n")
    with pytest.raises(FileNotFoundError, match=r"x4\.jpg: image file of image id x4"):
        VocDetection(root)[1]


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_ground_truth_scores_perfectly_with_cocoeval(tiny, iou_type):
    """The annotations are evaluable as-is: GT submitted as predictions gives AP = 1 for boxes, masks and
    keypoints (with KEYPOINT_SIGMAS)."""
    ds = CocoDetection(tiny.images_dir("train"), tiny.instances_json("train"))
    field = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
             field: ds.coco.annToRLE(a) if iou_type == "segm" else a[field]} for a in ds.gt["annotations"]]
    ev = COCOeval(ds.coco, ds.coco.loadRes(dets), iou_type)
    if iou_type == "keypoints":
        ev.params.kpt_oks_sigmas = np.array(KEYPOINT_SIGMAS)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
