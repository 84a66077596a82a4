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
    finished = torch.zeros(B, dtype=torch.bool, device=device)

    decoder = model.decoder
    if method != "port":
        features = model.encode(images)  # (B, N, d), once
    if method in ("cache", "graph"):
        memory_kv = decoder.cross_kv(decoder.memory(features))  # per layer (k, v), once
        cache = model.new_cache(B, max_new)
        graphed = _GraphedStep(model, memory_kv, cache, B, device) if method == "graph" else None

    for step in range(max_new):
        if method == "port":
            prefix = torch.full((B, vocab.max_len - 1), vocab.pad, dtype=torch.long, device=device)
            prefix[:, :step + 1] = tokens[:, :step + 1]  # the port pads the prefix to max_len - 1
            logits = decoder(model.encode(images), prefix)[:, step]  # (B, V)
        elif method == "recompute":
            logits = decoder(features, tokens[:, :step + 1])[:, -1]
        elif method == "cache":
            logits = decoder.decode(tokens[:, step:step + 1], step, memory_kv, cache)[:, -1]
        else:
            logits = graphed(tokens[:, step], step)
        token, prob = select_next(logits, strategy, top_k, top_p, temperature,
                                  None if allowed is None else allowed[step + 1], generator)
        if stop_at_eos:
            token = token.masked_fill(finished, vocab.pad)
            prob = prob.masked_fill(finished, 0.0)
            finished |= token == vocab.eos
        tokens[:, step + 1], probs[:, step + 1] = token, prob
        if stop_at_eos and (step + 1) % check_every == 0 and bool(finished.all()):
            break
    steps = max_new
    if stop_at_eos and B and bool(finished.all()):  # only PAD follows the last EOS column
        steps = int((tokens == vocab.eos).nonzero()[:, 1].max())
    return tokens[:, :1 + steps], probs[:, :1 + steps]
