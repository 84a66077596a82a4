"""Reference implementations exposed through the pluggable case interface (cases/interface).

`PIX2SEQ` is the reference Pix2Seq token pipeline (reference/pix2seq) plus the harness's COCO
evaluation; it is what `pytest cases/` checks when no --impl is given. It lives in bench/ because
its `evaluate` part uses bench.metrics (reference/ never imports bench/).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from bench.plugins import load_object
from reference.pix2seq.collate import collate_sequences
from reference.pix2seq.pipeline import detections_to_coco, prediction_table
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import Vocabulary, decode_sequence, encode_objects

__all__ = ["PIX2SEQ", "Pix2SeqReference", "evaluate_table", "load_implementation"]

load_implementation = load_object


def evaluate_table(gt: Mapping[str, Any], table: pd.DataFrame, strict: bool = False) -> dict[str, Any]:
    """COCO bbox metrics of a prediction table: the 12 named stats (None where undefined) and counts;
    strict: suspicious COCO input raises (vsbench run --strict)."""
    from bench.metrics.coco import evaluate_detections

    result = evaluate_detections(gt, detections_to_coco(table, gt), iou_type="bbox", strict=strict)
    return {**result.stats, "num_images": result.num_images, "num_gt": result.num_gt,
            "num_predictions": result.num_predictions}


class Pix2SeqReference:
    """The reference Pix2Seq pipeline, cut at the port's stage boundaries (see cases/interface/pix2seq.py)."""

    name = "reference"

    def __init__(self, vocab: Vocabulary | None = None) -> None:
        self.vocab = vocab or Vocabulary()

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

    def postprocess(self, tokens, token_probs, sizes):
        return postprocess_rows(self.vocab, tokens, token_probs, sizes)

    def prediction_table(self, image_ids, detections, gt=None) -> pd.DataFrame:
        return prediction_table(image_ids, detections, gt)

    def evaluate(self, gt, table) -> dict[str, Any]:
        return evaluate_table(gt, table)


PIX2SEQ = Pix2SeqReference()
