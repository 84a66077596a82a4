"""Greedy and beam-search decoding over any next-token step function (used by BLIP-2 stage 2's LM).

A step is ``step(tokens (R, t), state) -> (log-probabilities (R, V), state)``: `tokens` are every token so
far (the start token first), `state` whatever the model carries between steps (a KV cache, or None for a
recompute); ``reorder(state, rows (R,)) -> state`` makes row r of the new state row rows[r] of the old one
(beam search keeps the surviving hypotheses). Rows of one input are adjacent: input b owns rows
b*beams .. b*beams+beams-1.

Lengths count generated tokens after the start token: at most `max_length`; `end_id` is forbidden before
`min_length`. Output: LongTensor (B, L) of the generated tokens, `end_id` included when produced, then
`pad_id`. Beam scores are sum(log p) / length**length_penalty (finished hypotheses include the end token).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Step = Callable[[torch.Tensor, Any], "tuple[torch.Tensor, Any]"]
Reorder = Callable[[Any, torch.Tensor], Any]


def check_lengths(num_beams: int, max_length: int, min_length: int) -> None:
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_length < 1 or min_length < 0 or min_length > max_length:
        raise ValueError(f"need 0 <= min_length <= max_length and max_length >= 1, got {min_length}, {max_length}")


def greedy(step: Step, state: Any, start: torch.Tensor, max_length: int, min_length: int, end_id: int,
           pad_id: int) -> torch.Tensor:
    """start (B, 1) start tokens -> generated tokens (B, L)."""
    check_lengths(1, max_length, min_length)
    tokens = start
    done = torch.zeros(start.shape[0], dtype=torch.bool, device=start.device)
    for t in range(max_length):
        logp, state = step(tokens, state)
        if t < min_length:
            logp[:, end_id] = float("-inf")
        nxt = torch.where(done, torch.full_like(done, pad_id, dtype=torch.long), logp.argmax(dim=-1))
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == end_id
        if done.all():
            break
    return tokens[:, 1:]


def beam_search(step: Step, reorder: Reorder, state: Any, start: torch.Tensor, beams: int, max_length: int,
                min_length: int, end_id: int, pad_id: int, length_penalty: float = 1.0) -> torch.Tensor:
    """start (B*beams, 1) start tokens (each input's rows adjacent) -> best hypothesis per input (B, L).

    An input is done once it holds `beams` finished hypotheses and its best live one, at the best length it
    could still have, cannot beat the worst of them (live scores only fall)."""
    check_lengths(beams, max_length, min_length)
    R = start.shape[0]
    if R % beams:
        raise ValueError(f"{R} start rows are not a multiple of beams={beams}")
    B, device = R // beams, start.device
    tokens = start
    scores = torch.zeros(B, beams, device=device)
    scores[:, 1:] = float("-inf")  # the beams of an input start identical: expand the first only
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_length):
        logp, state = step(tokens, state)  # (B*beams, V)
        if t < min_length:
            logp[:, end_id] = float("-inf")
        V = logp.shape[-1]
        top_scores, top_idx = (scores.reshape(-1, 1) + logp).reshape(B, beams * V).topk(2 * beams, dim=1)
        rows = torch.arange(R, device=device).reshape(B, beams).clone()  # (B, beams) parent row of each beam
        new_scores = torch.full((B, beams), float("-inf"), device=device)
        new_tokens = torch.full((B, beams), pad_id, dtype=torch.long, device=device)
        for b in range(B):
            live = 0
            for s, idx in zip(top_scores[b].tolist(), top_idx[b].tolist()):
                if done[b] or live == beams or s == float("-inf"):
                    break
                parent, token = b * beams + idx // V, idx % V
                if token == end_id:
                    hyp = tokens[parent, 1:].tolist() + [token]
                    finished[b].append((s / len(hyp) ** length_penalty, hyp))
                else:
                    new_scores[b, live], rows[b, live], new_tokens[b, live] = s, parent, token
                    live += 1
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:beams]
            if len(finished[b]) == beams and not done[b]:
                done[b] = new_scores[b].max().item() / (t + 2) ** length_penalty <= finished[b][-1][0]
        if all(done):
            break
        flat = rows.reshape(-1)
        tokens = torch.cat([tokens[flat], new_tokens.reshape(-1, 1)], dim=1)
        scores = new_scores
        state = reorder(state, flat)
    best = []
    for b in range(B):
        candidates = list(finished[b])
        if not done[b]:  # out of length: the live beams compete with the finished ones
            candidates += [(s / max(t + 1, 1) ** length_penalty, tokens[b * beams + k, 1:].tolist())
                           for k, s in enumerate(scores[b].tolist()) if s > float("-inf")]
        best.append(max(candidates, key=lambda h: h[0])[1])
    out = torch.full((B, max(len(h) for h in best)), pad_id, dtype=torch.long, device=device)
    for b, hyp in enumerate(best):
        out[b, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
    return out
