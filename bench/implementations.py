"""Reference implementations exposed through the pluggable case interface (cases/interface).

`PIX2SEQ` is the reference Pix2Seq token pipeline (reference/pix2seq) plus the harness's COCO
evaluation; `PIX2SEQV2` the Pix2SeqV2 codecs, generation and results export (reference/pix2seqv2)
plus COCO / BLEU evaluation per task. They are what `pytest cases/` checks when no --impl is given,
and what the cases build well-formed inputs with. They live in bench/ because their evaluation parts
use bench.metrics (reference/ never imports bench/).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from bench.plugins import load_object
from reference.pix2seq.collate import collate_sequences
from reference.pix2seq.generate import generate_with
from reference.pix2seq.pipeline import detections_to_coco, prediction_table
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import Vocabulary, decode_sequence, encode_objects
from reference.pix2seqv2.captioning import split_words
from reference.pix2seqv2.codecs import Pix2SeqV2Codecs

__all__ = ["PIX2SEQ", "PIX2SEQV2", "Pix2SeqReference", "Pix2SeqV2Reference", "evaluate_table",
           "evaluate_task_results", "load_implementation"]

load_implementation = load_object
IOU_TYPE = {"detection": "bbox", "segmentation": "segm", "keypoint": "keypoints"}


def evaluate_table(gt: Mapping[str, Any], table: pd.DataFrame, strict: bool = False) -> dict[str, Any]:
    """COCO bbox metrics of a prediction table: the 12 named stats (None where undefined) and counts;
    strict: suspicious COCO input raises (vsbench run --strict). As pycocotools: no per-image cap across
    categories (COCOeval's maxDets is per image and category)."""
    from bench.metrics.coco import evaluate_detections

    result = evaluate_detections(gt, detections_to_coco(table, gt), iou_type="bbox", strict=strict)
    return {**result.stats, "num_images": result.num_images, "num_gt": result.num_gt,
            "num_predictions": result.num_predictions}


def evaluate_task_results(task: str, gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                          kpt_oks_sigmas: Sequence[float] | None = None) -> dict[str, Any]:
    """Metrics of one task's exported results: COCO stats by name for detection (bbox), segmentation
    (segm) and keypoint (OKS; default sigmas: pycocotools' 17 COCO ones); BLEU-1..4 (pycocoevalcap, whitespace-split words) for
    captioning, with `gt` a COCO captions dict (annotations {image_id, caption}); captions are compared
    lower-cased and split into words (reference.pix2seqv2.captioning.split_words)."""
    if task == "captioning":
        from bench.metrics.captions import caption_metrics

        refs: dict[int, list[str]] = {int(im["id"]): [] for im in gt["images"]}
        for ann in gt["annotations"]:
            refs[int(ann["image_id"])].append(" ".join(split_words(ann["caption"])))
        hyps = {int(r["image_id"]): " ".join(split_words(r["caption"])) for r in results}
        missing = sorted(set(refs) - set(hyps))
        if missing:
            raise ValueError(f"no caption for image ids {missing[:5]}: every ground-truth image needs one")
        table = caption_metrics(refs, hyps, tokenizer="whitespace", meteor=False, spice=False)
        return {f"BLEU-{n}": table[f"BLEU-{n}"] for n in range(1, 5)}
    if task not in IOU_TYPE:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join([*IOU_TYPE, 'captioning'])}")
    from bench.metrics.coco import evaluate_detections

    return dict(evaluate_detections(gt, list(results), iou_type=IOU_TYPE[task], max_per_image=None,
                                    kpt_oks_sigmas=kpt_oks_sigmas).stats)


class Pix2SeqReference:
    """The reference Pix2Seq pipeline, cut at the port's stage boundaries (see cases/interface/pix2seq.py)."""

    name = "reference"

    def __init__(self, vocab: Vocabulary | None = None) -> None:
        self.vocab = vocab or Vocabulary()

    def with_layout(self, num_bins: int, num_classes: int, max_len: int) -> "Pix2SeqReference":
        """The reference on another vocabulary (the cases build inputs for an implementation with it)."""
        return Pix2SeqReference(Vocabulary(num_bins, num_classes, max_len))

    num_bins = property(lambda self: self.vocab.num_bins)
    num_classes = property(lambda self: self.vocab.num_classes)
    max_len = property(lambda self: self.vocab.max_len)
    bos = property(lambda self: self.vocab.bos)
    eos = property(lambda self: self.vocab.eos)
    pad = property(lambda self: self.vocab.pad)

    def encode(self, boxes, labels, width, height) -> list[int]:
        return encode_objects(self.vocab, boxes, labels, width, height)

    def decode(self, tokens):
        return decode_sequence(self.vocab, tokens)

    def collate(self, sequences: Sequence[Sequence[int]]):
        return collate_sequences(self.vocab, sequences)[0]

    def generate(self, predict, images, max_new_tokens=None):
        return generate_with(self.vocab, predict, images, max_new_tokens)

    def postprocess(self, tokens, token_probs, sizes):
        return postprocess_rows(self.vocab, tokens, token_probs, sizes)

    def prediction_table(self, image_ids, detections, gt=None) -> pd.DataFrame:
        return prediction_table(image_ids, detections, gt)

    def evaluate(self, gt, table) -> dict[str, Any]:
        return evaluate_table(gt, table)


class Pix2SeqV2Reference(Pix2SeqV2Codecs):
    """The reference Pix2SeqV2 codecs, generation and export plus the harness's evaluation per task."""

    def evaluate_results(self, task, gt, results, kpt_oks_sigmas=None) -> dict[str, Any]:
        return evaluate_task_results(task, gt, results, kpt_oks_sigmas)


PIX2SEQ = Pix2SeqReference()
PIX2SEQV2 = Pix2SeqV2Reference()
