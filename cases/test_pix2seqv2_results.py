"""Results export and evaluation of every Pix2SeqV2 task. The perfect stand-in model's predictions (each
object's own box, polygons and keypoints, each image's first reference caption) are exported by the
implementation: every entry belongs to its own object and image and the reference evaluator scores the
export exactly 1.0. The implementation's evaluation is fed reference-exported results: 1.0 when perfect,
pycocotools' / coco-caption's numbers (computed here directly) when not."""

import contextlib
import copy
import io
import re

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cases.strategies_v2 import ground_truth_all_tasks, once
from cases.strategies_v2 import ids, ref  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2
TASKS = ("detection", "segmentation", "keypoint", "captioning")
PRIMARY = {"detection": "AP", "segmentation": "AP", "keypoint": "AP", "captioning": "BLEU-4"}


@pytest.fixture(scope="module")
def world(ids):
    """world() -> (gt, captions gt, perfect predictions per task, image ids) on square, wide and tall
    images, made inside the case."""
    return once(lambda: ground_truth_all_tasks(ids, seed=3))


def entry_key(task, entry, size):
    """What an exported entry says, comparable across implementations (masks decoded to pixels)."""
    if task == "captioning":
        return (int(entry["image_id"]), str(entry["caption"]))
    head = (int(entry["image_id"]), int(entry["category_id"]), round(float(entry["score"]), 9))
    if task == "detection":
        return head + tuple(np.round(np.asarray(entry["bbox"], np.float64), 6).tolist())
    if task == "keypoint":
        return head + tuple(np.round(np.asarray(entry["keypoints"], np.float64), 6).tolist())
    w, h = size[int(entry["image_id"])]
    rle = dict(entry["segmentation"])
    mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"]})
    assert mask.shape == (h, w), f"mask {mask.shape} for an image of {w}x{h}"
    return head + (hash(np.packbits(mask).tobytes()),)


@pytest.mark.case(stands_for="each exported entry belongs to its own object and image (a public Pix2SeqV2 "
                  "re-used one dict per image: every entry held the image's last object)", stage="export_results")
@pytest.mark.parametrize("task", TASKS)
def test_export_entries_belong_to_their_own_object_and_image(api, ref, world, task):
    gt, _, preds, image_ids = world()
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    got = api.export_results(task, image_ids, copy.deepcopy(preds[task]), gt)
    want = ref.export_results(task, image_ids, preds[task], gt)
    assert len(got) == len(want), f"{len(got)} entries for {len(want)} objects"
    got_keys = sorted(entry_key(task, e, size) for e in got)
    assert len(set(got_keys)) == len(got_keys), "two entries are the same object"
    assert got_keys == sorted(entry_key(task, e, size) for e in want)


@pytest.mark.case(stands_for="the export of perfect predictions scores exactly 1.0 with the reference "
                  "evaluator, per task (AP; BLEU-4 for captions)", stage="export_results")
@pytest.mark.parametrize("task", TASKS)
def test_exported_perfect_predictions_score_one(api, ref, world, task):
    gt, caps, preds, image_ids = world()
    results = api.export_results(task, image_ids, copy.deepcopy(preds[task]), gt)
    metrics = ref.evaluate_results(task, caps if task == "captioning" else gt, results)
    assert metrics[PRIMARY[task]] == pytest.approx(1.0, abs=1e-6), metrics


@pytest.mark.case(stands_for="evaluation of perfect results is exactly 1.0 per task", stage="evaluate_results")
@pytest.mark.parametrize("task", TASKS)
def test_perfect_results_score_one(api, ref, world, task):
    gt, caps, preds, image_ids = world()
    results = ref.export_results(task, image_ids, preds[task], gt)
    metrics = api.evaluate_results(task, caps if task == "captioning" else gt, results)
    if PRIMARY[task] not in metrics:
        pytest.fail(f"evaluate_results({task!r}) returned no {PRIMARY[task]!r} (keys {sorted(metrics)})", pytrace=False)
    assert metrics[PRIMARY[task]] == pytest.approx(1.0, abs=1e-6)


def imperfect(task, preds, rng):
    """The predictions damaged: some objects missed, scores shuffled, coordinates moved, words dropped."""
    out = copy.deepcopy(preds)
    for i, p in enumerate(out):
        if task == "captioning":
            words = p.split()
            out[i] = " ".join(w for k, w in enumerate(words) if rng.uniform() > 0.3 or k == 0)
        elif task == "detection":
            p["boxes"] = p["boxes"] + rng.normal(0, 4, p["boxes"].shape)
            p["boxes"][:, 2:] = np.maximum(p["boxes"][:, 2:], p["boxes"][:, :2] + 1)
            p["scores"] = rng.uniform(0.05, 1.0, len(p["scores"]))
        else:
            for inst in p:
                inst["score"] = float(rng.uniform(0.05, 1.0))
                if task == "keypoint":
                    kp = inst["keypoints"]
                    kp[kp[:, 2] > 0, :2] += rng.normal(0, 3, (int((kp[:, 2] > 0).sum()), 2))
                else:
                    inst["polygons"] = [(np.asarray(q) + rng.normal(0, 4, len(q))).clip(0).tolist()
                                        for q in inst["polygons"]]
            if p:
                del p[int(rng.integers(len(p)))]
    return out


def peer_metrics(task, gt, caps, results) -> dict[str, float]:
    """pycocotools' COCOeval (iouType bbox / segm / keypoints) or coco-caption's Bleu, called directly."""
    if task == "captioning":
        from pycocoevalcap.bleu.bleu import Bleu

        words = lambda c: " ".join(re.findall(r"[a-z0-9']+", c.lower()))  # noqa: E731
        refs = {im["id"]: [words(a["caption"]) for a in caps["annotations"] if a["image_id"] == im["id"]]
                for im in caps["images"]}
        hyps = {r["image_id"]: [words(r["caption"])] for r in results}
        with contextlib.redirect_stdout(io.StringIO()):
            scores, _ = Bleu(4).compute_score(refs, hyps)
        return {f"BLEU-{n + 1}": float(s) for n, s in enumerate(scores)}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)),
                             {"detection": "bbox", "segmentation": "segm", "keypoint": "keypoints"}[task])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1])}


@pytest.mark.case(stands_for="evaluation of imperfect results equals pycocotools' (bbox, segm, keypoints) and "
                  "coco-caption's BLEU within 1e-3", stage="evaluate_results")
@pytest.mark.parametrize("task", TASKS)
def test_imperfect_results_equal_the_official_evaluators(api, ref, world, task):
    gt, caps, preds, image_ids = world()
    results = ref.export_results(task, image_ids, imperfect(task, preds[task], np.random.default_rng(5)), gt)
    want = peer_metrics(task, gt, caps, results)
    got = api.evaluate_results(task, caps if task == "captioning" else gt, copy.deepcopy(results))
    for key, value in want.items():
        if key not in got:
            pytest.fail(f"evaluate_results({task!r}) returned no {key!r} (keys {sorted(got)})", pytrace=False)
        assert got[key] == pytest.approx(value, abs=1e-3), f"{key}: {got[key]}, the official evaluator's {value}"
