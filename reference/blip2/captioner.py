"""Caption generation from the Q-Former's text decoder (ITG head), greedy and beam search, batched.

The image is read once: the unimodal query pass returns the queries' keys/values, and with use_cache=True
every step feeds only the newest token on top of that cache (the public code silently never used its cache,
LAVIS #154/#211/#227/#310: a renamed argument meant each step recomputed the queries, the cross-attention
and the whole text). use_cache=False is that recompute, kept as the slow path; both give the same tokens.

Lengths count generated tokens after [DEC]: at most `max_length`, [SEP] not allowed before `min_length`.
Output: LongTensor (B, L), [SEP] included when produced, padded with the pad id.
"""

from __future__ import annotations

import torch

from reference.blip2.stage1 import Blip2Stage1


def _step_logits(model: Blip2Stage1, image_embeds, tokens, cache, use_cache):
    """Log-probabilities (B, V) of the next token and the new cache.

    tokens (B, t) every decoder token so far ([DEC] first); cache: query (+ text) keys/values or None."""
    Q = model.config.qformer.num_query_tokens
    B, t = tokens.shape
    if use_cache:
        new = tokens if cache[0][0].shape[2] == Q else tokens[:, -1:]  # (B, 1) after the first step
        mask = tokens.new_ones(B, cache[0][0].shape[2] + new.shape[1])
        logits, cache = model.decode(new, mask, cache, use_cache=True)
    else:  # recompute: queries (with cross-attention) and the whole text every step
        mask = tokens.new_ones(B, Q + t)
        out = model.qformer(input_ids=tokens, attention_mask=mask, image_embeds=image_embeds, causal=True)
        logits = model.lm_head(out.last_hidden_state[:, Q:])
    return torch.log_softmax(logits[:, -1].float(), dim=-1), cache


def _check(image_embeds, num_beams, max_length, min_length):
    if image_embeds.dim() != 3:
        raise ValueError(f"image_embeds must be (B, N, D_img), got shape {tuple(image_embeds.shape)}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if max_length < 1 or min_length < 0 or min_length > max_length:
        raise ValueError(f"need 0 <= min_length <= max_length and max_length >= 1, got {min_length}, {max_length}")


@torch.no_grad()
def generate(model: Blip2Stage1, image_embeds: torch.Tensor, num_beams: int = 3, max_length: int = 30,
             min_length: int = 10, use_cache: bool = True, length_penalty: float = 1.0) -> torch.Tensor:
    """Captions (B, L) for image features (B, N, D_img); num_beams=1 is greedy decoding."""
    _check(image_embeds, num_beams, max_length, min_length)
    if num_beams == 1:
        return _greedy(model, image_embeds, max_length, min_length, use_cache)
    return _beam(model, image_embeds, num_beams, max_length, min_length, use_cache, length_penalty)


def _start(model, image_embeds, beams, use_cache):
    cfg = model.config
    B = image_embeds.shape[0]
    embeds = image_embeds.repeat_interleave(beams, dim=0)  # (B*beams, N, D): beams of one image adjacent
    cache = model.query_pass(embeds, use_cache=True).past_key_values if use_cache else None
    tokens = torch.full((B * beams, 1), cfg.dec_token_id, dtype=torch.long, device=image_embeds.device)
    return embeds, cache, tokens


def _greedy(model, image_embeds, max_length, min_length, use_cache):
    cfg = model.config
    embeds, cache, tokens = _start(model, image_embeds, 1, use_cache)
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    for step in range(max_length):
        logp, cache = _step_logits(model, embeds, tokens, cache, use_cache)
        if step < min_length:
            logp[:, cfg.sep_token_id] = float("-inf")
        nxt = logp.argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, cfg.qformer.pad_token_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == cfg.sep_token_id
        if done.all():
            break
    return tokens[:, 1:]


def _beam(model, image_embeds, beams, max_length, min_length, use_cache, length_penalty):
    """Beam search: per image `beams` live hypotheses; a hypothesis ending in [SEP] is finished and scored
    sum(log p) / length**length_penalty; an image is done once it has `beams` finished hypotheses and no live
    one can beat the worst of them (live scores only fall)."""
    cfg = model.config
    B = image_embeds.shape[0]
    embeds, cache, tokens = _start(model, image_embeds, beams, use_cache)
    scores = torch.zeros(B, beams, device=tokens.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand the first one only
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_length):
        logp, cache = _step_logits(model, embeds, tokens, cache, use_cache)  # (B*beams, V)
        if step < min_length:
            logp[:, cfg.sep_token_id] = float("-inf")
        V = logp.shape[-1]
        total = (scores.reshape(-1, 1) + logp).reshape(B, beams * V)  # (B, beams*V)
        top_scores, top_idx = total.topk(2 * beams, dim=1)  # (B, 2*beams)
        new_scores = torch.full((B, beams), float("-inf"), device=tokens.device)
        new_rows = torch.arange(B * beams, device=tokens.device).reshape(B, beams).clone()
        new_tokens = torch.full((B, beams), cfg.qformer.pad_token_id, dtype=torch.long, device=tokens.device)
        for b in range(B):
            kept = 0
            for s, idx in zip(top_scores[b].tolist(), top_idx[b].tolist()):
                if done[b] or kept == beams or s == float("-inf"):
                    break
                beam, token = divmod(idx, V)
                row = b * beams + beam
                if token == cfg.sep_token_id:
                    hyp = tokens[row, 1:].tolist() + [token]
                    finished[b].append((s / len(hyp) ** length_penalty, hyp))
                    continue
                new_scores[b, kept], new_rows[b, kept], new_tokens[b, kept] = s, row, token
                kept += 1
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:beams]
            if len(finished[b]) == beams:
                best_live = new_scores[b].max().item() / (step + 2) ** length_penalty
                done[b] = done[b] or best_live <= finished[b][-1][0]
        if all(done):
            break
        tokens = torch.cat([tokens[new_rows.reshape(-1)], new_tokens.reshape(-1, 1)], dim=1)
        scores = new_scores
        if use_cache:
            cache = [(k[new_rows.reshape(-1)], v[new_rows.reshape(-1)]) for k, v in cache]
    outputs = []
    for b in range(B):
        if not done[b]:  # out of length: live beams compete with the finished ones
            for beam in range(beams):
                s = scores[b, beam].item()
                if s > float("-inf"):
                    hyp = tokens[b * beams + beam, 1:].tolist()
                    finished[b].append((s / max(len(hyp), 1) ** length_penalty, hyp))
        outputs.append(max(finished[b], key=lambda h: h[0])[1])
    width = max(len(o) for o in outputs)
    result = torch.full((B, width), cfg.qformer.pad_token_id, dtype=torch.long, device=image_embeds.device)
    for b, hyp in enumerate(outputs):
        result[b, : len(hyp)] = torch.tensor(hyp, dtype=torch.long)
    return result
