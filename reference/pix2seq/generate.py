"""Batched autoregressive generation for Pix2Seq: greedy / top-k / top-p, four interchangeable loops.

Methods (same tokens for greedy decoding, up to float rounding; tests check it in float64):
- "port":      the public port's loop: the ENCODER re-runs at every step, the prefix is padded to
               max_len - 1 with PAD and the whole decoder re-runs; the logits at the prefix end are used.
- "recompute": encoder once, the decoder re-runs over the (unpadded) prefix at every step.
- "cache":     encoder once, cross-attention K/V once per layer, a self-attention KV cache: one token
               per layer per step.
- "graph":     "cache" with static shapes, the decode step captured in a CUDA graph (CUDA only).

Options: `stop_at_eos` ends the loop once every row has emitted EOS (later tokens of a finished row are
PAD with probability 0); `constrain` lets each position emit only the token kind it must: slots 0-3 of
an object a coordinate, slot 4 a class, EOS only at an object boundary (and forced where no whole object
fits any more). A returned probability is that of the emitted token under the (constrained,
temperature-scaled) softmax, before top-k / top-p truncation; postprocess uses it as the score.

Work per step (tests/test_generate_work.py counts it): "cache" runs the encoder once and one token per decoder
layer per step, the same operations every step, FLOPs growing only by the attention over one more key; "port"
repeats the full fixed-shape pass. `threads` sets torch's CPU threads for the call: a small model's cached step
is dozens of sub-millisecond operations, each a barrier for every thread, so on a CPU shared with other work
(a thread descheduled at each barrier) threads=1 can be several times faster than one thread per core
(reports/performance.md, the tiny checkpoint's rows).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from reference.pix2seq.model import KVCache, Pix2Seq
from reference.pix2seq.tokenizer import TOKENS_PER_OBJECT, Vocabulary

METHODS = ("port", "recompute", "cache", "graph")
STRATEGIES = ("greedy", "top_k", "top_p")


def allowed_tokens(vocab: Vocabulary, length: int) -> torch.Tensor:
    """Token kinds per position of a [BOS, objects..., EOS] row of `length` tokens -> bool (length, V).

    Row p says which tokens position p may hold (row 0, BOS, is all False: BOS is given, never emitted).
    """
    allowed = torch.zeros(length, vocab.size, dtype=torch.bool)
    for p in range(1, length):
        slot = (p - 1) % TOKENS_PER_OBJECT
        room = p + TOKENS_PER_OBJECT < length  # an object started at p can be followed by EOS
        if slot == 0:
            allowed[p, vocab.eos] = True
            allowed[p, :vocab.num_bins] = room
        elif slot < 4:
            allowed[p, :vocab.num_bins] = True
        else:
            allowed[p, vocab.num_bins:vocab.num_bins + vocab.num_classes] = True
    return allowed


def select_next(logits: torch.Tensor, strategy: str = "greedy", top_k: int = 0, top_p: float = 1.0,
                temperature: float = 1.0, allowed: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B,V), allowed bool (V,) or (B,V) -> (token (B,) long, probability of that token (B,))."""
    logits = logits.float() / temperature
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, V)
    if strategy == "greedy":
        token = probs.argmax(dim=-1)
    else:
        filtered = probs
        if strategy == "top_k":
            if top_k < 1:
                raise ValueError(f"top_k={top_k}: top-k sampling needs top_k >= 1")
            kth = probs.topk(min(top_k, probs.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
            filtered = probs.masked_fill(probs < kth, 0.0)
        elif strategy == "top_p":
            if not 0.0 < top_p <= 1.0:
                raise ValueError(f"top_p={top_p}: top-p sampling needs 0 < top_p <= 1")
            sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
            drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p  # keeps at least the first
            filtered = probs.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)
        else:
            raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
        token = torch.multinomial(filtered, 1, generator=generator).squeeze(-1)
    return token, probs.gather(-1, token[:, None]).squeeze(-1)


def decode_loop(next_logits: Callable[[int], torch.Tensor], tokens: torch.Tensor, probs: torch.Tensor, start: int,
                *, eos: int, pad: int, allowed: torch.Tensor | None = None, stop_at_eos: bool = True,
                check_every: int = 1, **select) -> int:
    """Fill tokens[:, start:] and probs[:, start:] (B, L) in place, one position at a time -> columns used.

    `next_logits(pos)` returns the (B, V) logits of position `pos` given tokens[:, :pos]; `allowed` (L, V)
    bool is the token-kind constraint per position; `select` goes to `select_next`. With `stop_at_eos` a
    finished row gets PAD with probability 0 and the loop ends once every row has ended (checked every
    `check_every` positions: each check synchronises a GPU). Shared by every generation loop, so a
    scripted stand-in model (`generate_scripted`) runs exactly the code the real model runs.
    """
    B, length = tokens.shape
    finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    for pos in range(start, length):
        token, prob = select_next(next_logits(pos), allowed=None if allowed is None else allowed[pos], **select)
        if stop_at_eos:
            token = token.masked_fill(finished, pad)
            prob = prob.masked_fill(finished, 0.0)
            finished |= token == eos
        tokens[:, pos], probs[:, pos] = token, prob
        if stop_at_eos and (pos + 1 - start) % check_every == 0 and bool(finished.all()):
            return pos + 1
    return length


def check_logits(logits, batch: int, min_width: int) -> torch.Tensor:
    """A stand-in model's output -> float tensor (B, V); anything else raises ValueError saying what came back."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"predict(images, prefix) must return a tensor of logits (B, V), got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[0] != batch or logits.shape[1] < min_width:
        raise ValueError(f"predict(images, prefix) returned logits of shape {tuple(logits.shape)}; expected "
                         f"({batch}, V) with V >= {min_width}")
    if not logits.is_floating_point():
        raise ValueError(f"predict(images, prefix) returned {logits.dtype} logits; expected a float tensor")
    return logits


@torch.no_grad()
def generate_scripted(predict: Callable[[Any, torch.Tensor], torch.Tensor], images, prompts: torch.Tensor,
                      max_new_tokens: int, *, eos: int, pad: int,
                      allowed: torch.Tensor | Callable[[int], torch.Tensor] | None = None,
                      stop_at_eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy generation driven by any next-token function: `predict(images, prefix (B, t) long) -> logits (B, V)`.

    prompts (B, P) long -> (tokens (B, P+T), probs (B, P+T)), T <= max_new_tokens: the loop of `generate`
    (`decode_loop`) with the model replaced by `predict` (a scripted stand-in in the regression cases, or
    any model's forward pass). `images` is passed through untouched (row b of the prefix belongs to
    images[b]); `allowed` (P + max_new_tokens, V') constrains the token kinds (ids >= V' are never
    emitted), or is a function of the logits' width V returning that mask (built on the first step).
    """
    prompts = torch.as_tensor(prompts)
    if prompts.ndim != 2 or prompts.dtype not in (torch.int64, torch.int32) or prompts.shape[1] < 1:
        raise ValueError(f"prompts must be a (B, P) integer tensor with P >= 1, got {prompts.dtype} "
                         f"{tuple(prompts.shape)}")
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 1")
    B, P = prompts.shape
    length = P + int(max_new_tokens)
    tokens = torch.full((B, length), pad, dtype=torch.long)
    probs = torch.zeros(B, length)
    tokens[:, :P], probs[:, :P] = prompts, 1.0

    masks: list[torch.Tensor] = []

    def next_logits(pos: int) -> torch.Tensor:
        logits = check_logits(predict(images, tokens[:, :pos].clone()), B, 1 + max(eos, pad)).float()
        if allowed is None:
            return logits
        if not masks:
            masks.append(allowed(logits.shape[1]) if callable(allowed) else allowed)
        kinds = torch.zeros(logits.shape[1], dtype=torch.bool)  # ids beyond the constraint's width: never
        width = min(logits.shape[1], masks[0].shape[1])
        kinds[:width] = masks[0][pos, :width]
        return logits.masked_fill(~kinds, float("-inf"))  # as select_next(allowed=...) does

    end = decode_loop(next_logits, tokens, probs, P, eos=eos, pad=pad, stop_at_eos=stop_at_eos)
    return tokens[:, :end], probs[:, :end]


class _GraphedStep:
    """One cached decode step (B tokens at a position held in a device tensor) replayed from a CUDA graph."""

    def __init__(self, model: Pix2Seq, memory_kv, cache: KVCache, batch: int, device: torch.device) -> None:
        self.token = torch.full((batch, 1), model.vocab.bos, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm-up outside the graph (allocations, kernel selection)
            for _ in range(2):
                model.decoder.decode(self.token, self.pos, memory_kv, cache)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = model.decoder.decode(self.token, self.pos, memory_kv, cache)[:, -1]  # (B, V)

    def __call__(self, token: torch.Tensor, step: int) -> torch.Tensor:
        self.token.copy_(token[:, None])
        self.pos.fill_(step)
        self.graph.replay()
        return self.logits


@torch.no_grad()
def generate(model: Pix2Seq, images: torch.Tensor, *, max_new_tokens: int | None = None, method: str = "cache",
             strategy: str = "greedy", top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
             constrain: bool = False, stop_at_eos: bool = True, generator: torch.Generator | None = None,
             check_every: int | None = None, threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B,3,S,S) prepared -> (tokens (B, 1+T) long starting with BOS, token_probs (B, 1+T) float).

    T = max_new_tokens (default max_len - 1, the longest sequence) or fewer when every row stopped at EOS.
    `check_every`: steps between the all-rows-finished checks (each one synchronises a GPU); default 1
    on CPU, 8 on CUDA. `threads`: torch CPU threads during the call (None: torch's current setting),
    restored afterwards.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}: must be >= 1 (or None for torch's current setting)")
    with _torch_threads(threads):
        return _generate(model, images, max_new_tokens, method, strategy, top_k, top_p, temperature, constrain,
                         stop_at_eos, generator, check_every)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(before)


def _generate(model, images, max_new_tokens, method, strategy, top_k, top_p, temperature, constrain, stop_at_eos,
              generator, check_every):
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    vocab = model.vocab
    max_new = vocab.max_len - 1 if max_new_tokens is None else int(max_new_tokens)
    if not 1 <= max_new <= vocab.max_len - 1:
        raise ValueError(f"max_new_tokens={max_new}: must be in [1, {vocab.max_len - 1}] (max_len - 1)")
    if images.ndim != 4:
        raise ValueError(f"images must be a prepared (B, 3, S, S) tensor, got shape {tuple(images.shape)}")
    device, B = images.device, images.shape[0]
    if method == "graph" and device.type != "cuda":
        raise ValueError(f"method='graph' needs CUDA; images are on {device}")
    check_every = check_every or (8 if device.type == "cuda" else 1)
    length = 1 + max_new
    allowed = allowed_tokens(vocab, length).to(device) if constrain else None
    tokens = torch.full((B, length), vocab.pad, dtype=torch.long, device=device)
    probs = torch.zeros(B, length, device=device)
    tokens[:, 0], probs[:, 0] = vocab.bos, 1.0

    decoder = model.decoder
    if method != "port":
        features = model.encode(images)  # (B, N, d), once
    if method in ("cache", "graph"):
        memory_kv = decoder.cross_kv(decoder.memory(features))  # per layer (k, v), once
        cache = model.new_cache(B, max_new)
        graphed = _GraphedStep(model, memory_kv, cache, B, device) if method == "graph" else None

    def next_logits(pos: int) -> torch.Tensor:  # (B, V) for position pos, from tokens[:, :pos]
        if method == "port":
            prefix = torch.full((B, vocab.max_len - 1), vocab.pad, dtype=torch.long, device=device)
            prefix[:, :pos] = tokens[:, :pos]  # the port pads the prefix to max_len - 1
            return decoder(model.encode(images), prefix)[:, pos - 1]
        if method == "recompute":
            return decoder(features, tokens[:, :pos])[:, -1]
        if method == "cache":
            return decoder.decode(tokens[:, pos - 1:pos], pos - 1, memory_kv, cache)[:, -1]
        return graphed(tokens[:, pos - 1], pos - 1)

    end = decode_loop(next_logits, tokens, probs, 1, eos=vocab.eos, pad=vocab.pad, allowed=allowed,
                      stop_at_eos=stop_at_eos, check_every=check_every, strategy=strategy, top_k=top_k,
                      top_p=top_p, temperature=temperature, generator=generator)
    steps = end - 1
    if stop_at_eos and B and bool((tokens[:, :end] == vocab.eos).any(dim=1).all()):  # only PAD after the last EOS
        steps = int((tokens == vocab.eos).nonzero()[:, 1].max())
    return tokens[:, :1 + steps], probs[:, :1 + steps]


def generate_with(vocab: Vocabulary, predict: Callable[[Any, torch.Tensor], torch.Tensor], images,
                  max_new_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy, constrained, stop-at-EOS detection rows from any next-token function (see generate_scripted).

    images: anything of length B (row b belongs to images[b]) -> (tokens (B, 1+T) starting with BOS,
    token_probs (B, 1+T)); T <= max_new_tokens (default max_len - 1). The settings `generate` uses for
    evaluation (bench/train_detection.py): greedy, token-kind constraint, stop at EOS.
    """
    batch = len(images)
    max_new = vocab.max_len - 1 if max_new_tokens is None else int(max_new_tokens)
    if not 1 <= max_new <= vocab.max_len - 1:
        raise ValueError(f"max_new_tokens={max_new}: must be in [1, {vocab.max_len - 1}] (max_len - 1)")
    prompts = torch.full((batch, 1), vocab.bos, dtype=torch.long)
    return generate_scripted(predict, images, prompts, max_new, eos=vocab.eos, pad=vocab.pad,
                             allowed=allowed_tokens(vocab, 1 + max_new))
