"""Bad inputs the harness must answer with a clear error naming the input and the problem.

One table (`BAD_INPUTS`) drives both tests/test_reliability.py and the `reliability` benchmark
(reports/reliability.md): each entry builds its bad input in a scratch folder, runs the real code
path, and states what must be seen: an exception of a type whose message matches a pattern, or no
exception and a stated result.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class BadInput:
    name: str
    description: str  # the input, in words
    expected: str  # the expected behaviour, in words
    run: Callable[[Path], Any]  # builds the input under the scratch folder and calls the code path
    error: type[BaseException] | None  # None: must not raise
    pattern: str  # regex the message (or repr of the result) must match


@dataclass
class Outcome:
    entry: BadInput
    seen: str
    ok: bool


def _tiny_coco(folder: Path) -> tuple[Path, Path]:
    """A 1-image COCO dataset written under `folder`: (images dir, instances json)."""
    import cv2

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images / "a.png"), np.zeros((16, 16, 3), np.uint8))
    data = {"images": [{"id": 7, "file_name": "a.png", "width": 16, "height": 16}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 2, 8, 8], "area": 64.0, "iscrowd": 0}],
            "categories": [{"id": 3, "name": "square"}]}
    path = folder / "instances.json"
    path.write_text(json.dumps(data))
    return images, path


def _gt() -> dict:
    return {"images": [{"id": 1, "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900.0,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}


def _evaluate(detections, gt=None, **options):
    from bench.metrics.coco import evaluate_detections

    return evaluate_detections(gt or _gt(), detections, **options)


def _det(bbox, image_id=1, category_id=1):
    return [{"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": 0.9}]


def _truncated_json(tmp: Path):
    from bench.datasets.coco import CocoDetection

    images, path = _tiny_coco(tmp)
    path.write_text(path.read_text()[:57])
    return CocoDetection(images, path)


def _missing_image(tmp: Path):
    from bench.datasets.coco import CocoDetection

    images, path = _tiny_coco(tmp)
    (images / "a.png").unlink()
    return CocoDetection(images, path)[0]


def _missing_path(tmp: Path):
    from bench.datasets.coco import CocoDetection

    return CocoDetection(tmp / "no-such-folder" / "images", tmp / "no-such-folder" / "instances.json")


def _checkpoint_other_config(tmp: Path):
    from reference.pix2seq.checkpoint import load_port_state_dict
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig

    trained = Pix2Seq(Pix2SeqConfig.tiny())
    other = Pix2Seq(Pix2SeqConfig.tiny(num_classes=6, decoder_layers=2))
    return load_port_state_dict(other, trained.state_dict())


def _truncated_checkpoint(tmp: Path):
    from reference.pix2seq.checkpoint import load_checkpoint, save_checkpoint
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig

    path = tmp / "model.safetensors"
    save_checkpoint(path, Pix2Seq(Pix2SeqConfig.tiny()))
    path.write_bytes(path.read_bytes()[:1000])
    return load_checkpoint(path)


def _bad_impl(tmp: Path):
    from bench.plugins import load_object

    return load_object("no_such_package.pipeline:PIPELINE")


def _gt_id_zero(tmp: Path):
    gt = _gt()
    gt["annotations"][0]["id"] = 0
    return _evaluate(_det([10, 10, 30, 30]), gt).stats["AP"]


def _nan_tokens(tmp: Path):
    from reference.pix2seq.tokenizer import Vocabulary, encode_objects

    return encode_objects(Vocabulary(), [[1.0, float("nan"), 5.0, 5.0]], [0], 10, 10)


def _warned(detections, gt=None, **options) -> str:
    """'AP | warning; warning': pycocotools' number and the warnings beside it."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ap = _evaluate(detections, gt, **options).stats["AP"]
    return f"AP {ap!r} | " + "; ".join(str(w.message) for w in caught)


def _gt_with(change: Callable[[dict], None]) -> dict:
    gt = _gt()
    change(gt)
    return gt


def _string_ids(gt: dict) -> None:
    gt["images"][0]["id"] = gt["annotations"][0]["image_id"] = "a"


def _no_size(gt: dict) -> None:
    del gt["images"][0]["width"], gt["images"][0]["height"]


def _segm_gt(counts) -> dict:
    return _gt_with(lambda gt: gt["annotations"][0].update(segmentation={"size": [100, 100], "counts": counts}))


ONE = r"(0\.9999999999|1\.0)"
EVALUATION_INPUTS: list[BadInput] = [
    BadInput("xyxy-default-warns", "in-image xyxy boxes [60, 60, 95, 95] passed as xywh, default mode",
             "no error; pycocotools' AP and a warning that the boxes look like xyxy",
             lambda tmp: _warned(_det([60, 60, 95, 95])), None, r"^AP 0\.0 \| .*look like xyxy"),
    BadInput("unknown-category-default", "a detection of category id 42, default mode",
             "no error; pycocotools' AP and a warning naming id 42", lambda tmp: _warned(_det([1, 1, 5, 5], category_id=42)),
             None, r"^AP 0\.0 \| .*\[42\]"),
    BadInput("string-image-ids", "ground truth and detections with string image ids ('a'), perfect detection",
             "no error; AP = 1.0 as pycocotools, a warning that the ids are strings",
             lambda tmp: _warned(_det([10, 10, 30, 30], image_id="a"), _gt_with(_string_ids)), None,
             rf"^AP {ONE}.* \| .*strings"),
    BadInput("gt-without-size", "ground-truth images without width / height, perfect bbox detection",
             "no error; AP = 1.0 as pycocotools (bbox does not need sizes), a warning naming the images",
             lambda tmp: _warned(_det([10, 10, 30, 30]), _gt_with(_no_size)), None, rf"^AP {ONE}.* \| .*width/height: \[1\]"),
    BadInput("iscrowd-string", "a ground-truth annotation with iscrowd 'yes'", "ValueError naming the annotation",
             lambda tmp: _evaluate(_det([10, 10, 30, 30]), _gt_with(lambda g: g["annotations"][0].update(iscrowd="yes"))),
             ValueError, r"annotation #0 \(id 1\): iscrowd must be 0 or 1, got 'yes'"),
    BadInput("iscrowd-negative", "a ground-truth annotation with iscrowd -1", "ValueError naming the annotation",
             lambda tmp: _evaluate(_det([10, 10, 30, 30]), _gt_with(lambda g: g["annotations"][0].update(iscrowd=-1))),
             ValueError, r"annotation #0 \(id 1\): iscrowd must be 0 or 1, got -1"),
    BadInput("nan-score", "a detection with score NaN", "ValueError naming the detection",
             lambda tmp: _evaluate([{**_det([10, 10, 30, 30])[0], "score": float("nan")}]), ValueError,
             r"detection #0 .*score nan is not finite"),
    BadInput("missing-score", "a bbox detection without a score", "ValueError naming the detection and the key",
             lambda tmp: _evaluate([{k: v for k, v in _det([10, 10, 30, 30])[0].items() if k != "score"}]),
             ValueError, r"detection #0 lacks \['score'\]"),
    BadInput("three-number-box", "a detection bbox of 3 numbers", "ValueError naming the detection",
             lambda tmp: _evaluate(_det([1, 2, 3])), ValueError, r"detection #0 .*bbox must be 4 numbers"),
    BadInput("rle-garbage", "a ground-truth RLE whose counts string has characters outside the RLE alphabet",
             "ValueError naming the annotation and the character",
             lambda tmp: _evaluate([{**_det([10, 10, 30, 30])[0], "segmentation": {"size": [100, 100], "counts": "0"}}],
                                   _segm_gt("garbage!!"), iou_type="segm"), ValueError,
             r"annotation #0 \(id 1\): RLE counts 'garbage!!' are not a compressed RLE string"),
    BadInput("max-per-image-zero", "the per-image cap max_per_image=0", "ValueError naming the option",
             lambda tmp: _evaluate(_det([10, 10, 30, 30]), max_per_image=0), ValueError,
             r"max_per_image must be a positive int or None, got 0"),
]

BAD_INPUTS: list[BadInput] = [
    BadInput("truncated-json", "instances JSON cut after 57 bytes", "ValueError naming the file and position",
             _truncated_json, ValueError, r"instances\.json: malformed JSON at line \d+ column \d+"),
    BadInput("missing-image", "an image file listed in the JSON is absent", "FileNotFoundError naming file and image id",
             _missing_image, FileNotFoundError, r"a\.png.*7|7.*a\.png"),
    BadInput("missing-data-path", "a dataset folder that does not exist", "FileNotFoundError naming the path",
             _missing_path, FileNotFoundError, r"no-such-folder"),
    BadInput("unknown-image-id", "a detection for image id 99, not in the ground truth", "ValueError naming id 99",
             lambda tmp: _evaluate(_det([1, 1, 5, 5], image_id=99)), ValueError, r"99"),
    BadInput("unknown-category-id", "a detection of category id 42, not in the ground truth (--strict; by default a "
             "warning, as pycocotools never evaluates it)", "ValueError naming id 42",
             lambda tmp: _evaluate(_det([1, 1, 5, 5], category_id=42), strict=True), ValueError, r"42"),
    BadInput("nan-box", "a detection box with NaN", "ValueError naming the box",
             lambda tmp: _evaluate(_det([1, float("nan"), 5, 5])), ValueError, r"(?i)nan|finite"),
    BadInput("inf-box", "a detection box with inf", "ValueError naming the box",
             lambda tmp: _evaluate(_det([1, 1, float("inf"), 5])), ValueError, r"(?i)inf|finite"),
    BadInput("negative-box", "a detection box of negative width", "ValueError naming the box",
             lambda tmp: _evaluate(_det([10, 10, -5, 5])), ValueError, r"(?i)negative|width|size"),
    BadInput("xyxy-as-xywh", "xyxy boxes [60, 60, 95, 95] passed as xywh on a 100 px image (--strict; by default a "
             "warning beside pycocotools' number)", "ValueError saying the boxes look like xyxy",
             lambda tmp: _evaluate(_det([60, 60, 95, 95]), strict=True), ValueError, r"(?i)xyxy"),
    BadInput("gt-annotation-id-0", "ground-truth annotation with id 0 (cocoapi #672), perfect detection",
             "no error; ids renumbered, AP = 1.0", _gt_id_zero, None, r"^(0\.9999999999|1\.0)"),
    BadInput("empty-predictions", "an empty prediction set", "no error; AP = 0.0 (not a crash in loadRes)",
             lambda tmp: _evaluate([]).stats["AP"], None, r"^0\.0$"),
    BadInput("nan-gt-token-box", "a NaN coordinate given to the tokenizer", "ValueError naming the box",
             _nan_tokens, ValueError, r"boxes\[0\].*not finite"),
    BadInput("checkpoint-other-config", "a tiny checkpoint loaded into a model of another config",
             "CheckpointError listing the offending keys", _checkpoint_other_config, ValueError,
             r"does not fit the model: .*(missing keys|shape mismatches) \["),
    BadInput("truncated-checkpoint", "a safetensors checkpoint cut to 1000 bytes", "CheckpointError naming the file",
             _truncated_checkpoint, ValueError, r"model\.safetensors"),
    BadInput("unimportable-impl", "--impl no_such_package.pipeline:PIPELINE", "ImplementationError naming the module",
             _bad_impl, Exception, r"cannot import module 'no_such_package\.pipeline'"),
]


from bench.reliability_harness import entries as _harness_entries  # noqa: E402

BAD_INPUTS += EVALUATION_INPUTS + _harness_entries(BadInput)


def check(entry: BadInput, scratch: Path) -> Outcome:
    """Run one entry in its own scratch folder and judge what was seen against what was expected.
    The scratch folder's path is replaced by `<scratch>` in what was seen (reports hold no temp paths)."""
    folder = scratch / entry.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        result = entry.run(folder)
    except Exception as err:  # the point: record whatever came out
        seen = f"{type(err).__name__}: {err}".replace(str(folder), "<scratch>")
        ok = entry.error is not None and isinstance(err, entry.error) and re.search(entry.pattern, str(err)) is not None
        return Outcome(entry, seen, ok)
    text = result if isinstance(result, str) else repr(result)
    seen = f"no error; {text}".replace(str(folder), "<scratch>")
    ok = entry.error is None and re.search(entry.pattern, text) is not None
    return Outcome(entry, seen, ok)
