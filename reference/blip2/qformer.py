"""The BLIP-2 Querying Transformer (Q-Former), written from the paper and docs/design.md §4.

A BERT-style encoder whose input is [learned queries ; text tokens]:
- the queries (num_query_tokens x hidden, std 0.02) take no position embeddings; text tokens take word +
  position embeddings, positions starting at 0 even when the queries' keys/values come from a cache;
- self-attention is shared by queries and text, under a bidirectional mask (ITC / ITM) or the decoder mask
  (ITG: queries see queries only, text sees every query and the earlier text);
- a cross-attention block to the frozen image features sits in every `cross_attention_freq`-th layer
  (layers 0, k, 2k, ...) and runs on the query slice only; a text-only input never runs it;
- queries and text have separate feed-forward weights (`query_ffn` beside `text_ffn`);
- `use_cache=True` returns the self-attention keys/values per layer, `past_key_values` takes them back;
- `image_kv(image_embeds)` projects each cross-attention layer's image keys/values once, `forward(image_kv=...)`
  takes them instead of the image features: a batch of 1 is shared by every row (an image beside its k candidate
  texts: retrieval re-ranking), a batch of B is one image per row (gathered: the ITM pass of a training step).

Weight names map one to one onto transformers' `Blip2QFormerModel` (see reference/blip2/convert.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KVCache = list  # one (key, value) pair per layer, each (B, nh, L, hs)
ImageKV = list  # per layer the cross-attention (key, value) of the image, each (Bi, nh, N, hs); None: no cross-attention


@dataclass
class QFormerConfig:
    vocab_size: int = 30522  # text vocabulary (BERT-base uncased by default)
    hidden_size: int = 768  # width of queries and text tokens
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072  # feed-forward width
    max_position_embeddings: int = 512  # longest text (queries take no positions)
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    cross_attention_freq: int = 2  # a cross-attention block in layers 0, k, 2k, ...
    encoder_width: int = 1408  # width of the frozen image features (ViT-g: 1408)
    num_query_tokens: int = 32
    pad_token_id: int = 0
    initializer_range: float = 0.02
    attn_implementation: str = "sdpa"  # "sdpa" (torch fused attention) or "eager" (explicit softmax)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.cross_attention_freq < 1:
            raise ValueError(f"cross_attention_freq must be >= 1, got {self.cross_attention_freq}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {self.attn_implementation!r}")


def bert_init_(root: nn.Module, std: float) -> None:
    """BERT's init of every module under `root`, in place: normal(std) Linear / Embedding weights, zero Linear
    biases, unit LayerNorm weights and zero LayerNorm biases."""
    for module in root.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_attention_mask(key_padding: torch.Tensor, num_rows: int, past_length: int, query_length: int,
                   causal: bool) -> torch.Tensor:
    """Boolean mask (B, 1, num_rows, L) of which keys each current row may attend to.

    key_padding: (B, L) with L = past_length + num_rows, 1 = real token. Positions < query_length of the full
    sequence are queries. Bidirectional: every real key. Causal (ITG decoder mask): query rows see only
    queries; text rows see every query and the text up to and including themselves.
    """
    B, L = key_padding.shape
    if L != past_length + num_rows:
        raise ValueError(f"attention mask covers {L} positions, expected past {past_length} + current {num_rows}")
    allowed = key_padding.bool()[:, None, :].expand(B, num_rows, L)  # (B, rows, L)
    if causal:
        row = torch.arange(past_length, past_length + num_rows, device=key_padding.device)[:, None]  # (rows, 1)
        col = torch.arange(L, device=key_padding.device)[None, :]  # (1, L)
        is_query_key = col < query_length
        text_row_sees = (row >= query_length) & (col <= row)
        allowed = allowed & (is_query_key | text_row_sees)[None]
    return allowed[:, None]  # (B, 1, rows, L)


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> additive float mask (0 where allowed, the dtype's lowest finite value elsewhere)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class Attention(nn.Module):
    """Multi-head attention + output projection, residual and LayerNorm (BERT's post-norm block)."""

    def __init__(self, config: QFormerConfig, kv_width: int) -> None:
        super().__init__()
        C = config.hidden_size
        self.n_head = config.num_attention_heads
        self.eager = config.attn_implementation == "eager"
        self.attn_dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(kv_width, C)
        self.value = nn.Linear(kv_width, C)
        self.dense = nn.Linear(C, C)
        self.norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def key_value(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """source (B, S, kv_width) -> key, value each (B, nh, S, hs)."""
        B, S, _ = source.shape
        hs = self.query.out_features // self.n_head
        k = self.key(source).view(B, S, self.n_head, hs).transpose(1, 2)  # (B, nh, S, hs)
        v = self.value(source).view(B, S, self.n_head, hs).transpose(1, 2)  # (B, nh, S, hs)
        return k, v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, T, C); context (B, S, kv_width) for cross-attention (None: self-attention);
        mask additive (B, 1, T, L) or None; past (key, value) each (B, nh, P, hs) prepended to this step's;
        kv: precomputed cross-attention (key, value) each (B, nh, S, hs), or (1, nh, S, hs) shared by all B rows
        (their queries then attend as one batch of B*T rows: same numbers, one copy of the keys).
        Returns (output (B, T, C), (key, value) over all L positions)."""
        B, T, C = x.shape
        hs = C // self.n_head
        q = self.query(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = kv if kv is not None else self.key_value(x if context is None else context)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, P+S, hs)
            v = torch.cat([past[1], v], dim=2)
        shared = kv is not None and k.shape[0] == 1 and B > 1
        if shared:
            if mask is not None and mask.shape[0] != 1:
                raise ValueError(f"image_kv shared by {B} rows needs an image_mask of batch 1, got {tuple(mask.shape)}")
            q = q.transpose(0, 1).reshape(1, self.n_head, B * T, hs)  # (1, nh, B*T, hs)
        elif kv is not None and k.shape[0] != B:
            raise ValueError(f"image_kv of batch {k.shape[0]} for {B} rows: expected {B} or 1 (shared)")
        y = self._attend(q, k, v, mask)  # (B, nh, T, hs) or (1, nh, B*T, hs)
        if shared:
            y = y.view(self.n_head, B, T, hs).transpose(0, 1)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.norm(self.dropout(self.dense(y)) + x), (k, v)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q (B, nh, T, hs), k / v (B, nh, L, hs), additive mask broadcastable to (B, nh, T, L) -> (B, nh, T, hs)."""
        p = self.attn_dropout if self.training else 0.0
        if self.eager:
            scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1]**-0.5  # (B, nh, T, L)
            if mask is not None:
                scores = scores + mask
            probs = F.dropout(scores.softmax(dim=-1), p=p, training=self.training)
            return torch.matmul(probs, v)  # (B, nh, T, hs)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)


class FeedForward(nn.Module):
    """BERT's intermediate (dense + GELU) and output (dense, residual, LayerNorm)."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.fc2(F.gelu(self.fc1(x)))) + x)


class QFormerLayer(nn.Module):
    def __init__(self, config: QFormerConfig, index: int) -> None:
        super().__init__()
        self.attention = Attention(config, config.hidden_size)
        self.has_cross_attention = index % config.cross_attention_freq == 0
        self.crossattention = Attention(config, config.encoder_width) if self.has_cross_attention else None
        self.text_ffn = FeedForward(config)
        self.query_ffn = FeedForward(config)

    def forward(self, x, mask, query_length, image_embeds, image_mask, past, image_kv=None):
        """x (B, T, C) whose first `query_length` rows are queries; image_kv: this layer's precomputed
        cross-attention (key, value) or None. Returns (output (B, T, C), (k, v))."""
        h, present = self.attention(x, mask, past=past)
        if query_length == 0:
            return self.text_ffn(h), present
        queries = h[:, :query_length]  # (B, Q, C)
        if self.crossattention is not None:
            if image_embeds is None and image_kv is None:
                raise ValueError("image_embeds are required (or their image_kv): the queries pass through a "
                                 "cross-attention layer")
            queries, _ = self.crossattention(queries, image_mask, context=image_embeds, kv=image_kv)
        out = self.query_ffn(queries)
        if h.shape[1] > query_length:
            out = torch.cat([out, self.text_ffn(h[:, query_length:])], dim=1)  # (B, Q+T, C)
        return out, present


@dataclass
class QFormerOutput:
    last_hidden_state: torch.Tensor  # (B, T_current, C): queries first (if any), then text
    past_key_values: KVCache | None  # per layer (key, value) over every position so far, or None


class QFormer(nn.Module):
    """The Q-Former with its learned query tokens and text embeddings."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        self.config = config
        C = config.hidden_size
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, C))
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.embed_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.embed_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(QFormerLayer(config, i) for i in range(config.num_hidden_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT init (normal std initializer_range, zero bias, unit LayerNorm); the query FFN starts as a
        copy of the text FFN, as in the public code."""
        std = self.config.initializer_range
        bert_init_(self, std)
        nn.init.normal_(self.query_tokens, std=std)
        with torch.no_grad():
            self.word_embeddings.weight[self.config.pad_token_id].zero_()
            for layer in self.layers:
                layer.query_ffn.load_state_dict(layer.text_ffn.state_dict())

    @property
    def cross_attention_layers(self) -> list[int]:
        return [i for i, layer in enumerate(self.layers) if layer.has_cross_attention]

    def image_kv(self, image_embeds: torch.Tensor) -> ImageKV:
        """Each cross-attention layer's keys/values of the image features (Bi, N, encoder_width), computed once:
        per layer (key, value) each (Bi, nh, N, hs), None for a layer without cross-attention. Pass them as
        `forward(image_kv=...)`; rows of one image can share a batch-1 entry, `gather_image_kv` picks rows."""
        if image_embeds.dim() != 3 or image_embeds.shape[-1] != self.config.encoder_width:
            raise ValueError(f"image_embeds must be (B, N, {self.config.encoder_width}), got "
                             f"{tuple(image_embeds.shape)}")
        image_embeds = image_embeds.to(self.query_tokens.dtype)
        return [layer.crossattention.key_value(image_embeds) if layer.has_cross_attention else None
                for layer in self.layers]

    def embed(self, input_ids: torch.Tensor | None, with_queries: bool, batch: int,
              position_offset: int = 0) -> torch.Tensor:
        """[queries ; word + position embeddings] -> LayerNorm -> dropout: (B, Q+T, C)."""
        parts = []
        if with_queries:
            parts.append(self.query_tokens.expand(batch, -1, -1))
        if input_ids is not None:
            T = input_ids.shape[1]
            if position_offset + T > self.config.max_position_embeddings:
                raise ValueError(f"text of {position_offset + T} positions exceeds max_position_embeddings "
                                 f"{self.config.max_position_embeddings}")
            positions = torch.arange(position_offset, position_offset + T, device=input_ids.device)
            parts.append(self.word_embeddings(input_ids) + self.position_embeddings(positions)[None])
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.embed_dropout(self.embed_norm(x))

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                image_embeds: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                with_queries: bool | None = None, past_key_values: KVCache | None = None,
                past_query_length: int = 0, causal: bool = False, use_cache: bool = False,
                image_kv: ImageKV | None = None) -> QFormerOutput:
        """Run the Q-Former on [queries ; input_ids].

        input_ids (B, T) text or None; attention_mask (B, L) over every position including the queries and
        the cached ones (default: all ones); image_embeds (B, N, encoder_width) for the cross-attention
        (required whenever queries are in the input); with_queries: prepend the learned queries (default: when
        image_embeds are given); past_key_values from an earlier call, whose first `past_query_length`
        positions are queries; causal: the ITG decoder mask. Text positions start at 0 after the queries.
        image_kv (from `image_kv`) replaces image_embeds: per-layer keys/values of batch B, or of batch 1 shared
        by every row. image_mask (Bi, N) then has the batch of image_kv.
        """
        if image_kv is not None:
            if image_embeds is not None:
                raise ValueError("give image_embeds or image_kv, not both")
            if len(image_kv) != len(self.layers):
                raise ValueError(f"image_kv has {len(image_kv)} entries, expected one per layer ({len(self.layers)})")
        has_image = image_embeds is not None or image_kv is not None
        if with_queries is None:
            with_queries = has_image
        if input_ids is None and not with_queries:
            raise ValueError("nothing to run: give input_ids, or image_embeds / with_queries=True for the queries")
        if input_ids is not None and input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
        if input_ids is not None:
            B = input_ids.shape[0]
        elif image_embeds is not None:
            B = image_embeds.shape[0]
        else:
            B = next(kv[0].shape[0] for kv in image_kv if kv is not None) if image_kv is not None else 1
        Q = self.config.num_query_tokens if with_queries else 0
        if with_queries and past_key_values is not None:
            raise ValueError("queries can only come first: with_queries=True and past_key_values are exclusive")
        past_length = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        query_length = Q if with_queries else past_query_length
        text_offset = max(past_length - past_query_length, 0)
        x = self.embed(input_ids, with_queries, B, position_offset=text_offset)
        T = x.shape[1]
        if attention_mask is None:
            attention_mask = torch.ones(B, past_length + T, dtype=torch.long, device=x.device)
        elif attention_mask.shape != (B, past_length + T):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
                             f"{(B, past_length + T)} (cached {past_length} + queries {Q} + text {T - Q})")
        if not causal and bool(attention_mask.all()):
            mask = None  # nothing to hide: lets SDPA take its fastest (mask-free) kernel
        else:
            mask = additive(build_attention_mask(attention_mask, T, past_length, query_length, causal), x.dtype)
        img_mask = None
        if image_embeds is not None:
            image_embeds = image_embeds.to(x.dtype)
        if has_image and image_mask is not None:
            img_mask = additive(image_mask.bool()[:, None, None, :], x.dtype)  # (Bi, 1, 1, N)
        presents = []
        for i, layer in enumerate(self.layers):
            past = past_key_values[i] if past_key_values is not None else None
            x, present = layer(x, mask, Q, image_embeds, img_mask, past, image_kv[i] if image_kv is not None else None)
            if use_cache:  # otherwise let each layer's keys/values go at once
                presents.append(present)
        return QFormerOutput(x, presents if use_cache else None)



def gather_image_kv(image_kv: ImageKV, index: torch.Tensor) -> ImageKV:
    """The rows `index` (M,) of per-layer image keys/values: each (key, value) (Bi, nh, N, hs) -> (M, nh, N, hs),
    in the projection's memory layout (M, N, nh, hs) like keys/values projected in the pass itself."""
    pick = lambda t: t.transpose(1, 2).index_select(0, index).transpose(1, 2)  # noqa: E731
    return [None if kv is None else (pick(kv[0]), pick(kv[1])) for kv in image_kv]
