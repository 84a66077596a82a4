"""BLIP-2 stage 1: the Q-Former with its ITC / ITM / ITG heads, one forward returning each loss.

Follows the paper and the public code's structure (docs/design.md §4): one unimodal query pass (use_cache=True)
feeds both ITC (query features -> vision_proj) and ITG (its self-attention keys/values are reused by the text
decoder pass instead of being recomputed); the text [CLS] -> text_proj gives the ITC text feature; ITM runs
[queries ; text] bidirectionally on positives and hard negatives sampled from the ITC similarities. The image
keys/values of every cross-attention layer are projected once per step and reused by the ITM pass (its 3B pairs
are rows of the same B images), unless `forward(reuse_image_kv=False)` recomputes them per pair as the public
code does (same losses and gradients up to float rounding; tests/test_qformer_kv_reuse.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from reference.blip2.losses import (clamp_temperature, decoder_inputs, distributed_world, gather_features, itc_loss,
                                    itc_similarity, itm_loss, lm_loss)
from reference.blip2.qformer import ImageKV, QFormer, QFormerConfig, QFormerOutput, gather_image_kv
from reference.blip2.sampler import sample_negatives


@dataclass
class Blip2Stage1Config:
    qformer: QFormerConfig = field(default_factory=lambda: QFormerConfig(vocab_size=30523))  # BERT + [DEC]
    embed_dim: int = 256  # shared ITC space
    temp_init: float = 0.07  # learnable ITC temperature, clamped to [0.001, 0.5] when used
    label_smoothing: float = 0.1  # ITC and ITG
    cls_token_id: int = 101  # [CLS]: the text feature for ITC, kept as first token in ITM
    sep_token_id: int = 102  # [SEP]: end of text, the generation stop token
    dec_token_id: int = 30522  # [DEC]: replaces [CLS] as the first decoder token in ITG

    def __post_init__(self) -> None:
        if isinstance(self.qformer, dict):
            self.qformer = QFormerConfig(**self.qformer)
        for name in ("cls_token_id", "sep_token_id", "dec_token_id"):
            if not 0 <= getattr(self, name) < self.qformer.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} outside the vocabulary of {self.qformer.vocab_size}")


class LMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then a decoder tied to the word embeddings."""

    def __init__(self, config: QFormerConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.word_embeddings = [word_embeddings]  # a list, so the tied weight is not registered twice
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> logits (B, T, V)."""
        return F.linear(self.norm(F.gelu(self.dense(x))), self.word_embeddings[0].weight, self.bias)


class Blip2Stage1(nn.Module):
    def __init__(self, config: Blip2Stage1Config) -> None:
        super().__init__()
        self.config = config
        q = config.qformer
        self.qformer = QFormer(config.qformer)
        self.vision_proj = nn.Linear(q.hidden_size, config.embed_dim)
        self.text_proj = nn.Linear(q.hidden_size, config.embed_dim)
        self.itm_head = nn.Linear(q.hidden_size, 2)
        self.lm_head = LMHead(q, self.qformer.word_embeddings)
        self.temp = nn.Parameter(torch.tensor(config.temp_init))
        for module in (self.vision_proj, self.text_proj, self.itm_head, self.lm_head.dense):
            nn.init.normal_(module.weight, std=q.initializer_range)
            nn.init.zeros_(module.bias)

    # -- the three passes ------------------------------------------------------------------------
    def query_pass(self, image_embeds: torch.Tensor | None, use_cache: bool = False,
                   image_kv: ImageKV | None = None) -> QFormerOutput:
        """Unimodal queries over the image features (B, N, D_img) (or their precomputed image_kv):
        last_hidden_state (B, Q, C)."""
        return self.qformer(image_embeds=image_embeds, use_cache=use_cache, image_kv=image_kv,
                            with_queries=True)

    def image_features(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """L2-normalised query features (B, Q, E) for ITC."""
        return F.normalize(self.vision_proj(self.query_pass(image_embeds).last_hidden_state), dim=-1)

    def text_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unimodal text (no queries, no cross-attention): (B, T, C)."""
        return self.qformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised [CLS] feature (B, E) for ITC."""
        return F.normalize(self.text_proj(self.text_pass(input_ids, attention_mask)[:, 0]), dim=-1)

    def itm_pass(self, image_embeds: torch.Tensor | None, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None, image_kv: ImageKV | None = None) -> torch.Tensor:
        """[queries ; text] with a bidirectional mask: hidden states (B, Q+T, C). image_kv (from
        qformer.image_kv) replaces image_embeds: batch B, or batch 1 shared by all B texts (one image beside
        its candidate texts)."""
        B, Q = input_ids.shape[0], self.config.qformer.num_query_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        full = torch.cat([attention_mask.new_ones(B, Q), attention_mask], dim=1)  # (B, Q+T)
        return self.qformer(input_ids=input_ids, attention_mask=full, image_embeds=image_embeds, image_kv=image_kv,
                            with_queries=True).last_hidden_state

    def itm_logits(self, image_embeds, input_ids, attention_mask=None, image_kv: ImageKV | None = None) -> torch.Tensor:
        """Matching logits (B, 2), the head averaged over the query positions; column 1 = match."""
        Q = self.config.qformer.num_query_tokens
        return self.itm_head(self.itm_pass(image_embeds, input_ids, attention_mask, image_kv)[:, :Q]).mean(dim=1)

    def itg_logits(self, image_embeds: torch.Tensor, decoder_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None, reuse_query_cache: bool = True) -> torch.Tensor:
        """Decoder logits (B, T, V) at the text positions. decoder_ids start with [DEC].

        reuse_query_cache=True: the queries' keys/values come from the unimodal query pass; False: queries and
        text run jointly under the decoder mask (the same numbers, recomputed)."""
        B, T = decoder_ids.shape
        Q = self.config.qformer.num_query_tokens
        if attention_mask is None:
            attention_mask = torch.ones_like(decoder_ids)
        full = torch.cat([attention_mask.new_ones(B, Q), attention_mask], dim=1)  # (B, Q+T)
        if reuse_query_cache:
            cache = self.query_pass(image_embeds, use_cache=True).past_key_values
            return self.decode(decoder_ids, full, cache)
        out = self.qformer(input_ids=decoder_ids, attention_mask=full, image_embeds=image_embeds, causal=True)
        return self.lm_head(out.last_hidden_state[:, Q:])

    def decode(self, decoder_ids: torch.Tensor, attention_mask: torch.Tensor, cache: list,
               use_cache: bool = False):
        """Text decoder step(s) on top of a cache whose first Q positions are the queries.

        decoder_ids (B, T); attention_mask (B, cached + T). Returns logits (B, T, V), or (logits, new cache)
        with use_cache=True."""
        out = self.qformer(input_ids=decoder_ids, attention_mask=attention_mask, past_key_values=cache,
                           past_query_length=self.config.qformer.num_query_tokens, causal=True, use_cache=use_cache)
        logits = self.lm_head(out.last_hidden_state)
        return (logits, out.past_key_values) if use_cache else logits

    # -- stage-1 training forward ------------------------------------------------------------------
    def forward(self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                image_ids: torch.Tensor | None = None, generator: torch.Generator | None = None,
                hard_negatives: float = 1.0, reuse_image_kv: bool = True) -> dict:
        """image_embeds (B, N, D_img); input_ids / attention_mask (B, T) as [CLS] text [SEP] pad...; image_ids
        (B,) make captions of one image positives of each other; hard_negatives: share of the ITM negatives
        drawn from the ITC similarities (1, the paper) rather than uniformly (0: random negatives; see
        sampler.sample_negatives); reuse_image_kv: project the images' cross-attention keys/values once for
        the query pass and the ITM pass (False: per pass and pair, the public code's recompute).
        Returns {"itc", "itm", "itg", "loss"}."""
        B = image_embeds.shape[0]
        cfg = self.config
        if image_ids is None:
            image_ids = torch.arange(B, device=image_embeds.device)
        image_ids = torch.as_tensor(image_ids, device=image_embeds.device).reshape(-1)
        image_kv = self.qformer.image_kv(image_embeds) if reuse_image_kv else None
        query = self.query_pass(None if reuse_image_kv else image_embeds, use_cache=True, image_kv=image_kv)
        image_feats = F.normalize(self.vision_proj(query.last_hidden_state), dim=-1)  # (B, Q, E)
        text_feats = F.normalize(self.text_proj(self.text_pass(input_ids, attention_mask)[:, 0]), dim=-1)  # (B, E)
        loss_itc = itc_loss(image_feats, text_feats, self.temp, image_ids, cfg.label_smoothing)

        # ITM: hard negatives from the (detached) similarities, never the positive, never in place
        with torch.no_grad():
            all_ids = gather_features(image_ids)
            temp = clamp_temperature(self.temp)
            sim_i2t = itc_similarity(image_feats, gather_features(text_feats)) / temp  # (B, W*B)
            sim_t2i = itc_similarity(gather_features(image_feats), text_feats).t() / temp  # (B, W*B)
            positives = image_ids[:, None] == all_ids[None, :]
            neg_text = sample_negatives(sim_i2t, positives, generator, hard_negatives)  # (B,) for each image
            neg_image = sample_negatives(sim_t2i, positives, generator, hard_negatives)  # (B,) for each text
        all_text, all_mask = gather_features(input_ids), gather_features(attention_mask)
        ti, ii = (neg_text >= 0).nonzero().squeeze(1), (neg_image >= 0).nonzero().squeeze(1)
        itm_ids = torch.cat([input_ids, input_ids[ii], all_text[neg_text[ti]]])
        itm_masks = torch.cat([attention_mask, attention_mask[ii], all_mask[neg_text[ti]]])
        labels = torch.cat([torch.ones(B), torch.zeros(len(ii) + len(ti))]).long().to(image_embeds.device)
        itm_images, itm_kv = self._itm_images(image_embeds, image_kv, neg_image[ii], ti)
        loss_itm = itm_loss(self.itm_logits(itm_images, itm_ids, itm_masks, itm_kv), labels)

        # ITG: text decoder over the cached query keys/values
        dec_ids, dec_labels = decoder_inputs(input_ids, attention_mask, cfg.dec_token_id)
        full = torch.cat([attention_mask.new_ones(B, cfg.qformer.num_query_tokens), attention_mask], dim=1)
        loss_itg = lm_loss(self.decode(dec_ids, full, query.past_key_values), dec_labels, cfg.label_smoothing)
        return {"itc": loss_itc, "itm": loss_itm, "itg": loss_itg, "loss": loss_itc + loss_itm + loss_itg}

    def _itm_images(self, image_embeds: torch.Tensor, image_kv: ImageKV | None, neg_image: torch.Tensor,
                    text_neg_rows: torch.Tensor) -> tuple[torch.Tensor | None, ImageKV | None]:
        """The ITM pass's images [positives (B) ; negative images of texts ; images of negative texts]:
        as features (image_kv None: recompute) or as rows gathered from this step's image_kv. neg_image indexes
        the images of every process: with several processes the negative images are projected here."""
        B = image_embeds.shape[0]
        if image_kv is None:
            all_embeds = gather_features(image_embeds)
            return torch.cat([image_embeds, all_embeds[neg_image], image_embeds[text_neg_rows]]), None
        rows = torch.arange(B, device=image_embeds.device)
        if distributed_world() == 1:
            return None, gather_image_kv(image_kv, torch.cat([rows, neg_image, text_neg_rows]))
        foreign = self.qformer.image_kv(gather_features(image_embeds)[neg_image])  # (n, nh, N, hs) per layer
        local = gather_image_kv(image_kv, torch.cat([rows, text_neg_rows]))
        return None, [None if a is None else tuple(torch.cat([a[j][:B], f[j], a[j][B:]]) for j in range(2))
                      for a, f in zip(local, foreign)]
