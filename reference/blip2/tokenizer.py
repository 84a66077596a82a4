"""A word-level tokenizer for small caption vocabularies (the generated dataset has ~50 words).

BERT's WordPiece vocabulary would dominate a tiny model's parameters; the special tokens keep BERT's roles:
[PAD] (0), [UNK], [CLS] (ITC / ITM text start), [SEP] (end, generation stop), [DEC] (ITG start).
Normalisation, as coco-caption's tokenizer does for scoring: lower case, punctuation removed, whitespace split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]")
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> list[str]:
    """'A red circle, left.' -> ['a', 'red', 'circle', 'left']."""
    return _PUNCT.sub(" ", text.lower()).split()


@dataclass(frozen=True)
class WordTokenizer:
    words: tuple[str, ...]  # the vocabulary after the specials, in id order

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "WordTokenizer":
        """Vocabulary of every normalised word in `texts`, sorted (deterministic ids)."""
        return cls(tuple(sorted({w for t in texts for w in normalize(t)} - set(SPECIALS))))

    @property
    def vocab(self) -> tuple[str, ...]:
        return SPECIALS + self.words

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.words)

    pad_id, unk_id, cls_id, sep_id, dec_id = range(5)

    def token_id(self, word: str) -> int:
        index = {w: i for i, w in enumerate(self.vocab)}
        return index.get(word, self.unk_id)

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[CLS] words [SEP] [PAD]... -> (ids (B, max_len) long, attention mask (B, max_len) long); words past
        max_len - 2 are cut (the [SEP] is kept)."""
        if max_len < 3:
            raise ValueError(f"max_len must be >= 3 ([CLS], a word, [SEP]), got {max_len}")
        index = {w: i for i, w in enumerate(self.vocab)}
        ids = torch.full((len(texts), max_len), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            words = [index.get(w, self.unk_id) for w in normalize(text)][: max_len - 2]
            seq = [self.cls_id, *words, self.sep_id]
            ids[row, : len(seq)] = torch.tensor(seq)
        return ids, (ids != self.pad_id).long()

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first [SEP] / [PAD]; [CLS] / [DEC] skipped."""
        out = []
        for i in [int(i) for i in ids]:
            if i in (self.sep_id, self.pad_id):
                break
            if i in (self.cls_id, self.dec_id):
                continue
            out.append(self.vocab[i] if 0 <= i < self.vocab_size else SPECIALS[self.unk_id])
        return " ".join(out)
