"""Captioning task: [CAP, word ids..., EOS], words from a word list built on the training captions.

Words are lower-cased runs of letters, digits and apostrophes. The word list puts UNK first (index
0: every word outside the list), then the training words by decreasing count (ties alphabetical).
Word i has token id `vocab.word_start + i`; `vocab.num_words` must cover the list.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from reference.pix2seqv2.prompt import as_row, body_of
from reference.pix2seqv2.vocab import TaskVocabulary

UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9']+")


def split_words(caption: str) -> list[str]:
    """'A red Circle, left.' -> ['a', 'red', 'circle', 'left']."""
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a str, got {type(caption).__name__}")
    return _WORD.findall(caption.lower())


@dataclass(frozen=True)
class WordList:
    words: tuple[str, ...]  # words[0] is UNK
    _index: dict = field(init=False, repr=False, compare=False)  # word -> index

    def __post_init__(self) -> None:
        if not self.words or self.words[0] != UNK:
            raise ValueError(f"a word list starts with {UNK!r}")
        if len(set(self.words)) != len(self.words):
            raise ValueError("the word list has duplicate words")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_words: int | None = None) -> "WordList":
        """From training captions: words seen >= min_count times, most frequent first, UNK at 0."""
        counts = Counter(w for c in captions for w in split_words(c))
        ranked = sorted((w for w, n in counts.items() if n >= min_count and w != UNK), key=lambda w: (-counts[w], w))
        if max_words is not None:
            ranked = ranked[: max(0, max_words - 1)]
        return cls((UNK, *ranked))

    def __len__(self) -> int:
        return len(self.words)

    def index(self, word: str) -> int:
        """The word's index, 0 (UNK) for a word outside the list."""
        return self._index.get(word, 0)


def _check(vocab: TaskVocabulary, words: WordList) -> None:
    if vocab.num_words < len(words):
        raise ValueError(f"vocab.num_words={vocab.num_words} is smaller than the word list ({len(words)} words); "
                         f"use vocab.with_words({len(words)})")


def encode_caption(vocab: TaskVocabulary, words: WordList, caption: str) -> list[int]:
    """A caption -> [CAP, word ids..., EOS]; unknown words -> the UNK id; cut to vocab.max_len."""
    _check(vocab, words)
    ids = [vocab.word_start + words.index(w) for w in split_words(caption)][: vocab.max_len - 2]
    return [vocab.task_token("captioning"), *ids, vocab.eos]


def decode_caption(vocab: TaskVocabulary, words: WordList, tokens) -> str:
    """A row -> the caption: the word tokens between the task token and the first EOS, joined by spaces.

    Never raises on tokens: non-word tokens are skipped, UNK reads as '<unk>'.
    """
    _check(vocab, words)
    row = as_row(tokens)
    start = 1 if row.size and row[0] in (vocab.task_token("captioning"), vocab.bos) else 0
    body = body_of(vocab, row, start)
    index = body[vocab.is_word(body) & (body - vocab.word_start < len(words))] - vocab.word_start
    return " ".join(words.words[int(i)] for i in index)

