"""Batching of token sequences to the fixed width `max_len` (the same max_len the tokenizer caps by).

Fixes the port's bug 1: the port's tokenizer capped the NUMBER OF OBJECTS at max_len while collate
padded the SEQUENCE to max_len, so 60 objects (302 tokens) gave a negative pad width and a crash.
Here any sequence is accepted; objects beyond (max_len-2)//5 are dropped (the first ones are kept)
and counted.
"""

from __future__ import annotations

from typing import Sequence

import torch

from reference.pix2seq.tokenizer import TOKENS_PER_OBJECT, Vocabulary, as_token_array


def fit_sequence(vocab: Vocabulary, tokens: Sequence[int]) -> tuple[list[int], int]:
    """One [BOS, objects..., EOS] sequence cut to at most max_objects objects -> (tokens, dropped objects)."""
    tokens = [int(t) for t in as_token_array(tokens, "sequence").reshape(-1)]
    if len(tokens) < 2 or tokens[0] != vocab.bos or tokens[-1] != vocab.eos:
        raise ValueError(f"sequence must be [BOS={vocab.bos}, objects..., EOS={vocab.eos}], got "
                         f"{tokens[:3]}...{tokens[-2:]} (length {len(tokens)})")
    body = tokens[1:-1]
    if len(body) % TOKENS_PER_OBJECT:
        raise ValueError(f"sequence body of {len(body)} tokens is not whole objects of {TOKENS_PER_OBJECT}")
    num_objects = len(body) // TOKENS_PER_OBJECT
    keep = min(num_objects, vocab.max_objects)
    return [vocab.bos, *body[: keep * TOKENS_PER_OBJECT], vocab.eos], num_objects - keep


def collate_sequences(vocab: Vocabulary, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, list[int]]:
    """Sequences -> (tokens LongTensor (B, max_len) padded with PAD, dropped objects per row)."""
    batch = torch.full((len(sequences), vocab.max_len), vocab.pad, dtype=torch.long)  # (B, max_len)
    dropped = []
    for row, seq in enumerate(sequences):
        fitted, n_dropped = fit_sequence(vocab, seq)
        batch[row, : len(fitted)] = torch.tensor(fitted, dtype=torch.long)
        dropped.append(n_dropped)
    return batch, dropped


def shift_for_training(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, max_len) -> decoder input (B, max_len-1) = all but the last, target (B, max_len-1) = all but BOS."""
    return batch[:, :-1], batch[:, 1:]
