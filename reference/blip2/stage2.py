"""BLIP-2 stage 2: the Q-Former's query outputs as soft visual prompts of a frozen causal language model.

Image features (B, N, D_img) -> the Q-Former's unimodal query pass (B, Q, C) -> one linear projection to the
LM's width (B, Q, H) -> prepended to the LM's word embeddings of the text: inputs_embeds (B, Q + T, H). The LM
(a transformers causal LM: GPT-2 or OPT class, here a tiny config trained on the captions first) is frozen:
requires_grad False, out of the optimiser, and kept in eval mode when the model trains (no dropout), so its
weights stay bit-identical (`tensor_digest`); only the Q-Former and the projection learn.

Text for the LM: [BOS] words [EOS] [PAD]... (the word tokenizer's [CLS] / [SEP] / [PAD] ids). Labels are the
text ids with PAD -> -100 and -100 at the Q prompt positions; position t predicts label t + 1, so the last
prompt predicts [BOS] and no prompt is ever a target. Without image features the same model is the LM alone
(no prompt), the floor of the prompt ablation. Generation: greedy or beam search, on the LM's KV cache (the
prompts and [BOS] run once, then one token per step) or recomputing the whole sequence (same tokens).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

from reference.blip2.decoding import beam_search, greedy
from reference.blip2.losses import lm_loss
from reference.blip2.qformer import QFormer

IGNORE = -100


@dataclass
class LMConfig:
    """A tiny GPT-2 (transformers GPT2LMHeadModel, random init, tied input / output embeddings)."""

    vocab_size: int
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    max_positions: int = 40  # prompts + text
    dropout: float = 0.1  # residual, embedding and attention dropout (pre-training only: frozen = eval)
    bos_token_id: int = 2
    eos_token_id: int = 3
    pad_token_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def build_lm(cfg: LMConfig):
    """A GPT2LMHeadModel of `cfg` with random weights (seed with torch.manual_seed first)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_positions, n_embd=cfg.hidden_size,
                        n_layer=cfg.num_layers, n_head=cfg.num_heads, resid_pdrop=cfg.dropout,
                        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, bos_token_id=cfg.bos_token_id,
                        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    return GPT2LMHeadModel(config)


def lm_width(lm: nn.Module) -> int:
    return lm.get_input_embeddings().embedding_dim


def text_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) labels: the ids, -100 where attention_mask is 0 (PAD)."""
    return input_ids.masked_fill(attention_mask == 0, IGNORE)


def tensor_digest(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Blip2Stage2(nn.Module):
    """Q-Former + projection (trainable) in front of a frozen causal LM."""

    def __init__(self, qformer: QFormer, lm: nn.Module) -> None:
        super().__init__()
        self.qformer = qformer
        self.proj = nn.Linear(qformer.config.hidden_size, lm_width(lm))  # torch's default init, as the public code
        self.lm = lm
        self.lm.requires_grad_(False)
        self.lm.eval()

    @property
    def num_query_tokens(self) -> int:
        return self.qformer.config.num_query_tokens

    def train(self, mode: bool = True) -> "Blip2Stage2":
        super().train(mode)
        self.lm.eval()  # frozen: never dropout
        return self

    def prompts(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Soft visual prompts (B, Q, H) from image features (B, N, D_img)."""
        if image_embeds.dim() != 3:
            raise ValueError(f"image_embeds must be (B, N, D_img), got shape {tuple(image_embeds.shape)}")
        return self.proj(self.qformer(image_embeds=image_embeds).last_hidden_state)

    def lm_inputs(self, image_embeds: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds (B, Q+T, H), attention_mask (B, Q+T), labels (B, Q+T)): Q prompts, then the text's
        word embeddings; labels -100 at the prompts and PAD. image_embeds None: no prompt (Q = 0)."""
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                             "must both be (B, T)")
        text = self.lm.get_input_embeddings()(input_ids)  # (B, T, H)
        labels = text_labels(input_ids, attention_mask)
        if image_embeds is None:
            return text, attention_mask, labels
        if image_embeds.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{image_embeds.shape[0]} images but {input_ids.shape[0]} texts")
        prompts = self.prompts(image_embeds).to(text.dtype)  # (B, Q, H)
        B, Q = input_ids.shape[0], prompts.shape[1]
        mask = torch.cat([attention_mask.new_ones(B, Q), attention_mask], dim=1)
        labels = torch.cat([labels.new_full((B, Q), IGNORE), labels], dim=1)
        return torch.cat([prompts, text], dim=1), mask, labels

    def forward(self, image_embeds: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                ) -> torch.Tensor:
        """Next-token cross-entropy (float32 scalar) of the text given the prompts."""
        embeds, mask, labels = self.lm_inputs(image_embeds, input_ids, attention_mask)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits  # (B, Q+T, V)
        return lm_loss(logits, labels, label_smoothing=0.0)

    # -- generation ------------------------------------------------------------------------------
    def _step(self, tokens: torch.Tensor, state: tuple, use_cache: bool):
        """Decoding step: state = (prompts (R, Q, H) or None, the LM's KV cache or None)."""
        prompts, cache = state
        R = tokens.shape[0]
        if use_cache and cache is not None:  # one new token on top of the cache
            mask = tokens.new_ones(R, cache.get_seq_length() + 1)
            out = self.lm(input_ids=tokens[:, -1:], attention_mask=mask, cache=cache, use_cache=True)
        else:  # the first step, or the recompute: the prompts and every token so far
            embeds = self.lm.get_input_embeddings()(tokens)  # (R, t, H)
            if prompts is not None:
                embeds = torch.cat([prompts, embeds], dim=1)  # (R, Q+t, H)
            out = self.lm(inputs_embeds=embeds, attention_mask=tokens.new_ones(R, embeds.shape[1]), use_cache=use_cache)
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (R, V)
        return logp, (prompts, out.cache if use_cache else None)

    @staticmethod
    def _reorder(state: tuple, rows: torch.Tensor) -> tuple:
        prompts, cache = state
        if cache is not None:
            cache.reorder_cache(rows)
        return (None if prompts is None else prompts[rows], cache)

    @torch.no_grad()
    def generate(self, image_embeds: torch.Tensor | None, num_beams: int = 3, max_length: int = 21,
                 min_length: int = 3, use_cache: bool = True, batch_size: int | None = None,
                 length_penalty: float = 1.0) -> torch.Tensor:
        """Captions (B, L): tokens after [BOS], [EOS] included when produced, then PAD. image_embeds None:
        the LM alone from [BOS] (batch_size rows, default 1)."""
        cfg = self.lm.config
        if image_embeds is not None:
            prompts = self.prompts(image_embeds).repeat_interleave(num_beams, dim=0)  # (B*beams, Q, H)
            B, device = image_embeds.shape[0], image_embeds.device
        else:
            prompts, B, device = None, batch_size or 1, self.proj.weight.device
        start = torch.full((B * num_beams, 1), cfg.bos_token_id, dtype=torch.long, device=device)
        def step(tokens, state):
            return self._step(tokens, state, use_cache)

        if num_beams == 1:
            return greedy(step, (prompts, None), start, max_length, min_length, cfg.eos_token_id, cfg.pad_token_id)
        return beam_search(step, self._reorder, (prompts, None), start, num_beams, max_length, min_length,
                           cfg.eos_token_id, cfg.pad_token_id, length_penalty)
