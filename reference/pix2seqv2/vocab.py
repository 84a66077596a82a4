"""The shared Pix2SeqV2 vocabulary: one id space for every task (docs/design.md §3).

Layout (COCO defaults: 384 bins, 91 classes):

    0 .. num_bins-1                      coordinate bins            (COCO 0..383)
    num_bins .. num_bins+C-1             class tokens               (COCO 384..474)
    B = num_bins + C                     BOS                        (475)
    B+1, B+2                             EOS, PAD                   (476, 477)
    B+3 .. B+6                           task tokens: detection, segmentation, captioning, keypoint
                                         (478..481); a task token replaces BOS at position 0
    B+invisible_offset                   invisible keypoint         (500)
    B+separator_offset                   polygon separator          (501)
    B+word_offset .. +num_words-1        caption words              (550 ..)

The first part (bins, classes, BOS/EOS/PAD) is exactly reference.pix2seq's `Vocabulary`, so the
detection task reuses the Pix2Seq tokenizer unchanged. `TaskVocabulary.compact(...)` packs the
special tokens right after the task tokens (no unused ids) for small generated datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.pix2seq.tokenizer import Vocabulary

TASKS = ("detection", "segmentation", "captioning", "keypoint")
BOX_PROMPT_TOKENS = 5  # xmin, ymin, xmax, ymax, class: the box prompt of segmentation and keypoints


@dataclass(frozen=True)
class TaskVocabulary:
    num_bins: int = 384  # coordinate bins
    num_classes: int = 91  # C; class c has token num_bins + c
    max_len: int = 300  # longest sequence of any task, task token and EOS included
    num_words: int = 0  # size of the caption word list (its UNK entry included)
    invisible_offset: int = 25  # invisible-keypoint token = BOS + 25 (COCO: 500)
    separator_offset: int = 26  # polygon separator = BOS + 26 (COCO: 501)
    word_offset: int = 75  # first word id = BOS + 75 (COCO: 550)

    def __post_init__(self) -> None:
        Vocabulary(self.num_bins, self.num_classes, self.max_len)  # validates the shared part
        first_free = 3 + len(TASKS)  # EOS, PAD, the task tokens
        if min(self.invisible_offset, self.separator_offset) < first_free:
            raise ValueError(f"invisible_offset={self.invisible_offset} and separator_offset="
                             f"{self.separator_offset} must be >= {first_free} (after EOS, PAD and the task tokens)")
        if self.invisible_offset == self.separator_offset:
            raise ValueError(f"invisible_offset and separator_offset are both {self.invisible_offset}")
        if self.word_offset <= max(self.invisible_offset, self.separator_offset):
            raise ValueError(f"word_offset={self.word_offset} must come after the invisible and separator tokens")
        if self.num_words < 0:
            raise ValueError(f"num_words={self.num_words} must be >= 0")
        if self.max_len < 2 + 2 * BOX_PROMPT_TOKENS:
            raise ValueError(f"max_len={self.max_len}: too short for a prompt and one keypoint")

    @classmethod
    def compact(cls, num_bins: int, num_classes: int, num_words: int = 0, max_len: int = 300) -> "TaskVocabulary":
        """No unused ids: invisible = BOS+7, separator = BOS+8, words from BOS+9."""
        return cls(num_bins, num_classes, max_len, num_words, invisible_offset=7, separator_offset=8,
                   word_offset=9)

    def with_words(self, num_words: int) -> "TaskVocabulary":
        """The same layout with a word range of `num_words` ids."""
        return TaskVocabulary(self.num_bins, self.num_classes, self.max_len, num_words, self.invisible_offset,
                              self.separator_offset, self.word_offset)

    @property
    def base(self) -> Vocabulary:
        """The Pix2Seq vocabulary of the detection task (same bins, classes, BOS, EOS, PAD)."""
        return Vocabulary(self.num_bins, self.num_classes, self.max_len)

    @property
    def bos(self) -> int:
        return self.num_bins + self.num_classes

    @property
    def eos(self) -> int:
        return self.bos + 1

    @property
    def pad(self) -> int:
        return self.bos + 2

    def task_token(self, task: str) -> int:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
        return self.bos + 3 + TASKS.index(task)

    @property
    def task_tokens(self) -> dict[str, int]:
        return {task: self.task_token(task) for task in TASKS}

    def task_of(self, token: int) -> str | None:
        """The task whose token is `token`, or None."""
        index = int(token) - self.bos - 3
        return TASKS[index] if 0 <= index < len(TASKS) else None

    @property
    def invisible(self) -> int:
        return self.bos + self.invisible_offset

    @property
    def separator(self) -> int:
        return self.bos + self.separator_offset

    @property
    def word_start(self) -> int:
        return self.bos + self.word_offset

    @property
    def size(self) -> int:
        """Number of token ids (the model's output width)."""
        return self.word_start + self.num_words

    def is_coord(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        return (tokens >= 0) & (tokens < self.num_bins)

    def is_class(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        return (tokens >= self.num_bins) & (tokens < self.bos)

    def is_word(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        return (tokens >= self.word_start) & (tokens < self.size)

    def prompt_length(self, task: str) -> int:
        """Tokens given to the model before it generates: the task token, plus the box prompt."""
        self.task_token(task)
        return 1 + (BOX_PROMPT_TOKENS if task in ("segmentation", "keypoint") else 0)


COCO = TaskVocabulary()  # the layout of docs/design.md §3
