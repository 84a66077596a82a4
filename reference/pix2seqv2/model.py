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
    num_classes: int = 91  # COCO classes (docs/design.md §3)
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


TOKEN_TABLES = ("decoder.embedding.weight", "decoder.output.weight", "decoder.output.bias")


def token_row_map(vocab: TaskVocabulary, detector_vocab) -> dict[int, int]:
    """{task-vocabulary id: detector-vocabulary id} for the tokens a Pix2Seq detector already knows:
    coordinate bin j <- the detector's bin at the same position (bins span [0, 1] end to end), class c <-
    class c, BOS/EOS/PAD <- the same, every task token <- BOS (the token it replaces)."""
    if detector_vocab.num_classes != vocab.num_classes:
        raise ValueError(f"the detector has {detector_vocab.num_classes} classes, the task vocabulary "
                         f"{vocab.num_classes}: they must be equal")
    scale = (detector_vocab.num_bins - 1) / (vocab.num_bins - 1)
    rows = {j: int(j * scale + 0.5) for j in range(vocab.num_bins)}
    rows.update({vocab.num_bins + c: detector_vocab.num_bins + c for c in range(vocab.num_classes)})
    rows.update({vocab.bos: detector_vocab.bos, vocab.eos: detector_vocab.eos, vocab.pad: detector_vocab.pad})
    rows.update({token: detector_vocab.bos for token in vocab.task_tokens.values()})
    return rows


@torch.no_grad()
def init_from_detector(model: Pix2Seq, detector: Pix2Seq) -> dict[str, int]:
    """Start a Pix2SeqV2 model from a trained Pix2Seq detector, as the paper starts from a
    detection-pretrained model: every weight of equal name and shape is copied; the token embedding
    and output rows are copied by meaning (token_row_map); word, invisible and separator rows keep their
    fresh init. -> {"tensors": copied whole, "token_rows": rows copied per token table}."""
    src, dst = detector.state_dict(), model.state_dict()
    mismatched = [k for k in dst if k not in TOKEN_TABLES and (k not in src or src[k].shape != dst[k].shape)]
    if mismatched:
        raise CheckpointError(f"detector does not fit the Pix2SeqV2 model (other sizes?): {mismatched[:6]}")
    rows = token_row_map(model.vocab, detector.vocab)
    new, old = torch.tensor(list(rows)), torch.tensor(list(rows.values()))
    for name, tensor in dst.items():
        if name in TOKEN_TABLES:
            tensor[new] = src[name][old].to(tensor.dtype)
        else:
            tensor.copy_(src[name])
    return {"tensors": len(dst) - len(TOKEN_TABLES), "token_rows": len(rows)}
