"""Caption generation by BLIP's image-grounded decoder: nucleus sampling (the CapFilt captioner, top_p = 0.9 as in
the paper), greedy decoding, or beam search (`beam_generate`, the paper's captioning evaluation: 3 beams).

Nucleus filter (Holtzman et al., 2019): keep the SMALLEST set of most probable tokens whose total probability
reaches top_p, i.e. a token is kept when the mass of the tokens ranked above it is still below top_p. So the token
that crosses the threshold is kept and the nucleus is never empty (a filter that drops every token whose
cumulative mass exceeds top_p loses that token, and all tokens when the top one alone exceeds top_p).

Decoding recomputes the decoder on the whole prefix at each step (the tiny model's captions are short); [SEP] is
forbidden before `min_length` words, [PAD] / [CLS] / [DEC] / [ENC] are never generated, a finished row is padded.
"""

from __future__ import annotations

import torch

from reference.blip.model import Blip
from reference.blip2.decoding import beam_search


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits (B, V) -> the same logits (float32) with -inf outside each row's nucleus; top_p in (0, 1]."""
    if not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    logits = logits.float()
    if top_p >= 1.0:
        return logits.clone()
    probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)  # (B, V)
    mass_above = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = mass_above >= top_p
    drop_sorted[:, 0] = False  # the most probable token is always in the nucleus
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


@torch.no_grad()
def generate(model: Blip, patch_feats: torch.Tensor, max_length: int = 20, min_length: int = 1, top_p: float = 0.9,
             sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Captions (B, L <= max_length) long: the ids after [DEC], [SEP] included when produced, then [PAD].

    sample=True: nucleus sampling with top_p (seeded by `generator`); False: greedy (argmax)."""
    cfg = model.config
    if not 0 <= min_length <= max_length or max_length < 1:
        raise ValueError(f"need 0 <= min_length <= max_length and max_length >= 1, got {min_length}, {max_length}")
    if max_length + 1 > cfg.text.max_position_embeddings:
        raise ValueError(f"max_length {max_length} + [DEC] exceeds max_position_embeddings "
                         f"{cfg.text.max_position_embeddings}")
    image_embeds = model.image_pass(patch_feats)[0]
    B = image_embeds.shape[0]
    tokens = torch.full((B, 1), cfg.dec_token_id, dtype=torch.long, device=image_embeds.device)
    finished = torch.zeros(B, dtype=torch.bool, device=image_embeds.device)
    never = [cfg.pad_token_id, cfg.cls_token_id, cfg.dec_token_id, cfg.enc_token_id]
    for step in range(max_length):
        logits = model.decoder_logits(image_embeds, tokens)[:, -1].float()  # (B, V)
        logits[:, never] = float("-inf")
        if step < min_length:
            logits[:, cfg.sep_token_id] = float("-inf")
        if sample:
            probs = torch.softmax(top_p_filter(logits, top_p), dim=-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_ids = logits.argmax(dim=-1)
        next_ids = next_ids.masked_fill(finished, cfg.pad_token_id)
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
        finished |= next_ids == cfg.sep_token_id
        if bool(finished.all()):
            break
    return tokens[:, 1:]


@torch.no_grad()
def beam_generate(model: Blip, patch_feats: torch.Tensor, num_beams: int = 3, max_length: int = 20,
                  min_length: int = 3) -> torch.Tensor:
    """Beam-search captions (B, L) long, as `generate` returns them (reference/blip2/decoding.py beam_search on
    the decoder, recomputed on the whole prefix at each step; the same tokens are never generated)."""
    cfg = model.config
    if max_length + 1 > cfg.text.max_position_embeddings:
        raise ValueError(f"max_length {max_length} + [DEC] exceeds max_position_embeddings "
                         f"{cfg.text.max_position_embeddings}")
    image_embeds = model.image_pass(patch_feats)[0].repeat_interleave(num_beams, dim=0)  # (B*beams, 1+N, D)
    never = [cfg.pad_token_id, cfg.cls_token_id, cfg.dec_token_id, cfg.enc_token_id]

    def step(tokens: torch.Tensor, embeds: torch.Tensor):
        logits = model.decoder_logits(embeds, tokens)[:, -1].float()  # (R, V)
        logits[:, never] = float("-inf")
        return torch.log_softmax(logits, dim=-1), embeds

    start = torch.full((image_embeds.shape[0], 1), cfg.dec_token_id, dtype=torch.long, device=image_embeds.device)
    return beam_search(step, lambda embeds, rows: embeds[rows], image_embeds, start, num_beams, max_length,
                       min_length, cfg.sep_token_id, cfg.pad_token_id)
