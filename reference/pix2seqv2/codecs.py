"""All Pix2SeqV2 codecs, generation and results export on one vocabulary, as one object (the reference
of the `pix2seqv2` case family with bench.implementations' evaluation added, see
cases/interface/pix2seqv2.py for the contract of each part)."""

from __future__ import annotations

from typing import Iterable

import torch

from reference.pix2seqv2 import captioning, detection, export, keypoints, loss, prompt, segmentation
from reference.pix2seqv2.generate import generate_task
from reference.pix2seqv2.vocab import COCO, TaskVocabulary


class Pix2SeqV2Codecs:
    """Encoders/decoders of every task on `vocab` (default: the COCO layout of docs/design.md §3)."""

    name = "reference"

    def __init__(self, vocab: TaskVocabulary = COCO) -> None:
        self.vocab = vocab

    def with_layout(self, layout: dict) -> "Pix2SeqV2Codecs":
        """The same codecs on another implementation's `token_layout` (bins, classes, offsets of the special
        tokens); ValueError when its BOS / EOS / PAD / task tokens are not in this family's order."""
        bos = int(layout["bos"])
        vocab = TaskVocabulary(int(layout["num_bins"]), int(layout["num_classes"]), int(layout["max_len"]), 0,
                               int(layout["invisible"]) - bos, int(layout["separator"]) - bos,
                               int(layout["word_start"]) - bos)
        mine = type(self)(vocab)
        differ = {k: (layout[k], v) for k, v in mine.token_layout.items() if int(layout[k]) != v}
        if differ:
            raise ValueError(f"token layout differs from the family's order (BOS, EOS, PAD, task tokens after "
                             f"the classes): {differ} (given, expected)")
        return mine

    @property
    def token_layout(self) -> dict[str, int]:
        """Every fixed id of the vocabulary (the part names are not those of the pix2seq family, so that
        one object may implement both families without either one's cases running on the other)."""
        v = self.vocab
        return {"num_bins": v.num_bins, "num_classes": v.num_classes, "max_len": v.max_len, "bos": v.bos,
                "eos": v.eos, "pad": v.pad, **v.task_tokens, "invisible": v.invisible, "separator": v.separator,
                "word_start": v.word_start}

    def prompt(self, task: str, box=None, label=None, width: float = 1.0, height: float = 1.0) -> list[int]:
        return prompt.task_prompt(self.vocab, task, box, label, width, height)

    def encode_detection(self, boxes, labels, width, height) -> list[int]:
        return detection.encode_detection(self.vocab, boxes, labels, width, height)

    def decode_detection(self, tokens, width, height, probs=None) -> dict:
        return detection.decode_detection(self.vocab, tokens, width, height, probs)

    def encode_segmentation(self, box, label, polygons, width, height, seed=None) -> list[int]:
        return segmentation.encode_segmentation(self.vocab, box, label, polygons, width, height, seed)

    def decode_segmentation(self, tokens, width, height) -> dict:
        return segmentation.decode_segmentation(self.vocab, tokens, width, height)

    def polygons_to_rle(self, polygons, width, height) -> dict:
        return segmentation.polygons_to_rle(polygons, width, height)

    def encode_keypoints(self, box, label, keypoints_, width, height) -> list[int]:
        return keypoints.encode_keypoints(self.vocab, box, label, keypoints_, width, height)

    def decode_keypoints(self, tokens, width, height, num_keypoints=None) -> dict:
        return keypoints.decode_keypoints(self.vocab, tokens, width, height, num_keypoints)

    def build_words(self, captions: Iterable[str]) -> captioning.WordList:
        return captioning.WordList.build(captions)

    def encode_caption(self, words: captioning.WordList, caption: str) -> list[int]:
        return captioning.encode_caption(self._with(words), words, caption)

    def decode_caption(self, words: captioning.WordList, tokens) -> str:
        return captioning.decode_caption(self._with(words), words, tokens)

    def target_mask(self, tokens) -> torch.Tensor:
        return loss.target_mask(self.vocab, torch.as_tensor(tokens, dtype=torch.long))

    def generate_task(self, predict, images, task, prompts, max_new_tokens=None, num_keypoints=17):
        return generate_task(self.vocab, predict, images, task, prompts, max_new_tokens, num_keypoints)

    def export_results(self, task, image_ids, predictions, gt) -> list[dict]:
        return export.export_results(task, image_ids, predictions, gt)

    def _with(self, words: captioning.WordList) -> TaskVocabulary:
        return self.vocab if self.vocab.num_words >= len(words) else self.vocab.with_words(len(words))


PIX2SEQV2 = Pix2SeqV2Codecs()
