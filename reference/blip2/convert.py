"""State-dict conversion between the reference Q-Former and transformers' BLIP-2 classes.

transformers splits what `reference.blip2.qformer.QFormer` holds in one module over three places:
`Blip2QFormerModel` (embedding LayerNorm `layernorm.*` and `encoder.layer.N.*`), `Blip2TextEmbeddings`
(`word_embeddings`, `position_embeddings`) and the parent model's `query_tokens`. The key names below are
facts read from transformers 5.x; the mapping is one to one, so export then import is the identity.
`Blip2ForImageTextRetrieval`-style prefixes (`qformer.`, `embeddings.`, `query_tokens`) are the default.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

# (reference key pattern, transformers Blip2QFormerModel key pattern) inside one layer
_LAYER_KEYS = (
    ("attention.query", "attention.attention.query"),
    ("attention.key", "attention.attention.key"),
    ("attention.value", "attention.attention.value"),
    ("attention.dense", "attention.output.dense"),
    ("attention.norm", "attention.output.LayerNorm"),
    ("crossattention.query", "crossattention.attention.query"),
    ("crossattention.key", "crossattention.attention.key"),
    ("crossattention.value", "crossattention.attention.value"),
    ("crossattention.dense", "crossattention.output.dense"),
    ("crossattention.norm", "crossattention.output.LayerNorm"),
    ("text_ffn.fc1", "intermediate.dense"),
    ("text_ffn.fc2", "output.dense"),
    ("text_ffn.norm", "output.LayerNorm"),
    ("query_ffn.fc1", "intermediate_query.dense"),
    ("query_ffn.fc2", "output_query.dense"),
    ("query_ffn.norm", "output_query.LayerNorm"),
)
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def reference_to_hf_key(key: str, qformer_prefix: str = "qformer.", embeddings_prefix: str = "embeddings.") -> str:
    """Name of a reference Q-Former weight in a transformers BLIP-2 state dict."""
    if key == "query_tokens":
        return "query_tokens"
    if key in ("word_embeddings.weight", "position_embeddings.weight"):
        return embeddings_prefix + key
    if key.startswith("embed_norm."):
        return qformer_prefix + "layernorm." + key.split(".", 1)[1]
    match = _LAYER.match(key)
    if match:
        index, inner, kind = match.groups()
        for ours, theirs in _LAYER_KEYS:
            if inner == ours:
                return f"{qformer_prefix}encoder.layer.{index}.{theirs}.{kind}"
    raise KeyError(f"reference Q-Former weight {key!r} has no transformers counterpart")


def hf_to_reference_key(key: str, qformer_prefix: str = "qformer.", embeddings_prefix: str = "embeddings.") -> str | None:
    """Inverse of `reference_to_hf_key`; None for transformers keys outside the Q-Former."""
    if key == "query_tokens":
        return key
    if key.startswith(embeddings_prefix) and key[len(embeddings_prefix):] in ("word_embeddings.weight",
                                                                              "position_embeddings.weight"):
        return key[len(embeddings_prefix):]
    if not key.startswith(qformer_prefix):
        return None
    inner_key = key[len(qformer_prefix):]
    if inner_key.startswith("layernorm."):
        return "embed_norm." + inner_key.split(".", 1)[1]
    match = _HF_LAYER.match(inner_key)
    if match:
        index, inner, kind = match.groups()
        for ours, theirs in _LAYER_KEYS:
            if inner == theirs:
                return f"layers.{index}.{ours}.{kind}"
    return None


def export_to_hf(qformer_state: Mapping[str, torch.Tensor], qformer_prefix: str = "qformer.",
                 embeddings_prefix: str = "embeddings.") -> dict[str, torch.Tensor]:
    """Reference Q-Former state dict -> transformers keys (clones, so the result owns its tensors).

    With qformer_prefix="" the `layernorm.*` / `encoder.*` keys load straight into a `Blip2QFormerModel`.
    """
    return {reference_to_hf_key(k, qformer_prefix, embeddings_prefix): v.detach().clone()
            for k, v in qformer_state.items()}


def import_from_hf(hf_state: Mapping[str, torch.Tensor], qformer_prefix: str = "qformer.",
                   embeddings_prefix: str = "embeddings.") -> dict[str, torch.Tensor]:
    """transformers BLIP-2 state dict -> reference Q-Former keys; keys outside the Q-Former are ignored.

    Missing parts (e.g. a bare `Blip2QFormerModel` has no embeddings or query tokens) are simply absent:
    load with `strict=False` and check the returned missing keys.
    """
    out = {}
    for key, value in hf_state.items():
        ours = hf_to_reference_key(key, qformer_prefix, embeddings_prefix)
        if ours is not None:
            out[ours] = value.detach().clone()
    return out


_HEADS = (("vision_proj.", "vision_projection."), ("text_proj.", "text_projection."), ("itm_head.", "itm_head."))


def import_stage1_from_hf(hf_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`Blip2ForImageTextRetrieval` state dict -> `Blip2Stage1` keys (Q-Former, query tokens, text embeddings,
    ITC projections, ITM head). transformers has no ITG head or temperature: those stay absent (strict=False)."""
    out = {f"qformer.{k}": v for k, v in import_from_hf(hf_state).items()}
    for ours, theirs in _HEADS:
        for key, value in hf_state.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value.detach().clone()
    return out
