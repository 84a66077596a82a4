"""The Pix2SeqV2 model: the Pix2Seq encoder-decoder (reference/pix2seq/model.py) unchanged, with its
token embedding and output layer sized to the shared task vocabulary (reference/pix2seqv2/vocab.py).

The config extends `Pix2SeqConfig` by the task-vocabulary fields; `cfg.vocab` is then a
`TaskVocabulary`, which `Pix2Seq` uses for its embedding / output widths and PAD masking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from reference.pix2seq.checkpoint import CheckpointError, check_state_dict, read_metadata, save_checkpoint
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
from reference.pix2seqv2.captioning import WordList
from reference.pix2seqv2.segmentation import MAX_POINTS
from reference.pix2seqv2.vocab import TaskVocabulary

FORMAT = "vsbench-pix2seqv2-1"


@dataclass
class Pix2SeqV2Config(Pix2SeqConfig):
    num_classes: int = 91  # COCO classes (DESIGN.md §3)
    num_words: int = 0  # caption word list size, UNK included
    invisible_offset: int = 25  # invisible-keypoint token = BOS + offset
    separator_offset: int = 26  # polygon separator = BOS + offset
    word_offset: int = 75  # first word = BOS + offset
    max_points: int = MAX_POINTS  # polygon points per segmentation sequence
    num_keypoints: int = 17  # keypoints per instance (COCO person: 17)

    @property
    def vocab(self) -> TaskVocabulary:  # type: ignore[override]
        return TaskVocabulary(self.num_bins, self.num_classes, self.max_len, self.num_words, self.invisible_offset,
                              self.separator_offset, self.word_offset)

    @classmethod
    def tiny(cls, **overrides: Any) -> "Pix2SeqV2Config":
        """Pix2Seq's tiny model on a compact vocabulary: 128 bins, 4 classes, 5 keypoints, 16 polygon points."""
        base = dict(num_classes=4, invisible_offset=7, separator_offset=8, word_offset=9, max_points=16,
                    num_keypoints=5)
        return super().tiny(**{**base, **overrides})


def build_model(cfg: Pix2SeqV2Config) -> Pix2Seq:
    """A Pix2Seq network over the task vocabulary of `cfg` (model.vocab is a TaskVocabulary)."""
    cfg.vocab  # validates the layout
    return Pix2Seq(cfg)


def save_v2_checkpoint(path: str | os.PathLike, model: Pix2Seq, words: WordList,
                       metadata: Mapping[str, Any] | None = None, half: bool = True) -> Path:
    """Weights + config + caption word list (+ metadata) as one safetensors file."""
    if not isinstance(model.cfg, Pix2SeqV2Config):
        raise ValueError("save_v2_checkpoint needs a model built from a Pix2SeqV2Config")
    return save_checkpoint(path, model, {"format_v2": FORMAT, "words": list(words.words), **(metadata or {})}, half)


def load_v2_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                       ) -> tuple[Pix2Seq, WordList, dict[str, Any]]:
    """A file written by save_v2_checkpoint -> (model in float32, eval mode; word list; metadata)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format_v2") != FORMAT or "words" not in meta:
        raise CheckpointError(f"{path}: not a Pix2SeqV2 checkpoint (metadata format_v2 != {FORMAT!r})")
    try:
        cfg = Pix2SeqV2Config.from_dict(meta["config"])
        words = WordList(tuple(meta["words"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config or word list in metadata is invalid: {exc}") from exc
    state = load_file(str(path), device=str(map_location))
    model = build_model(cfg)
    check_state_dict(model, state, str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(map_location).eval(), words, meta
