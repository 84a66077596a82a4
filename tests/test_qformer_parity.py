"""Parity of the reference Q-Former with transformers' Blip2QFormerModel (an independent peer).

Random weights are copied in BOTH directions (reference -> transformers and transformers -> reference); the
query-only, text-only and ITM passes must agree to 1e-5 in float32 with eager attention, on fresh random
inputs with padding. transformers has no ITG path: there the cached-query-KV pass must equal the joint
queries+text pass under the decoder mask.
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip2.convert import export_to_hf, hf_to_reference_key, import_from_hf, reference_to_hf_key
from reference.blip2.qformer import QFormer, QFormerConfig

transformers = pytest.importorskip("transformers")
from transformers import Blip2QFormerConfig, Blip2QFormerModel  # noqa: E402
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings  # noqa: E402

TOL = 1e-5
SIZES = dict(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=40,
             max_position_embeddings=24)


def pair(seed: int, freq: int = 2, impl: str = "eager", direction: str = "ref->hf"):
    """A reference Q-Former and a transformers (model, embeddings, query_tokens) with the same weights."""
    torch.manual_seed(seed)
    ours = QFormer(QFormerConfig(**SIZES, cross_attention_freq=freq, encoder_width=20, num_query_tokens=6,
                                 attn_implementation=impl)).eval()
    hc = Blip2QFormerConfig(**SIZES, cross_attention_frequency=freq, encoder_hidden_size=20,
                            use_qformer_text_input=True, attn_implementation=impl)
    hf, emb = Blip2QFormerModel(hc).eval(), Blip2TextEmbeddings(hc).eval()
    if direction == "ref->hf":
        state = export_to_hf(ours.state_dict(), qformer_prefix="", embeddings_prefix="emb.")
        hf.load_state_dict({k: v for k, v in state.items() if k.startswith(("layernorm", "encoder"))}, strict=True)
        emb.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("emb.")})
        query_tokens = state["query_tokens"]
    else:
        query_tokens = torch.randn(1, 6, SIZES["hidden_size"]) * 0.02
        hf_state = {**{f"qformer.{k}": v for k, v in hf.state_dict().items()},
                    **{f"embeddings.{k}": v for k, v in emb.state_dict().items()}, "query_tokens": query_tokens}
        result = ours.load_state_dict(import_from_hf(hf_state), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
    return ours, hf, emb, query_tokens


def inputs(seed: int, B: int = 3, T: int = 9, N: int = 7):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SIZES["vocab_size"], (B, T), generator=gen)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2:] = 0
    return torch.randn(B, N, 20, generator=gen), ids, mask


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), direction=st.sampled_from(["ref->hf", "hf->ref"]), freq=st.sampled_from([1, 2, 3]))
def test_query_text_and_itm_passes_match_transformers(seed, direction, freq):
    ours, hf, emb, query_tokens = pair(seed, freq, direction=direction)
    image, ids, mask = inputs(seed + 1)
    B, Q = ids.shape[0], query_tokens.shape[1]
    queries = query_tokens.expand(B, -1, -1)
    with torch.no_grad():
        query_ours = ours(image_embeds=image).last_hidden_state
        query_hf = hf(query_embeds=queries, encoder_hidden_states=image).last_hidden_state
        assert max_diff(query_ours, query_hf) <= TOL

        text_ours = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        text_hf = hf(query_embeds=emb(input_ids=ids), query_length=0, attention_mask=mask).last_hidden_state
        assert max_diff(text_ours, text_hf) <= TOL

        full_mask = torch.cat([torch.ones(B, Q, dtype=torch.long), mask], dim=1)
        itm_ours = ours(input_ids=ids, attention_mask=full_mask, image_embeds=image).last_hidden_state
        itm_hf = hf(query_embeds=emb(input_ids=ids, query_embeds=queries), query_length=Q, attention_mask=full_mask,
                    encoder_hidden_states=image).last_hidden_state
        assert max_diff(itm_ours, itm_hf) <= TOL


def test_sdpa_matches_transformers_within_1e4():
    ours, hf, emb, query_tokens = pair(3, impl="sdpa")
    image, ids, mask = inputs(4)
    Q = query_tokens.shape[1]
    full_mask = torch.cat([torch.ones(3, Q, dtype=torch.long), mask], dim=1)
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=full_mask, image_embeds=image).last_hidden_state
        b = hf(query_embeds=emb(input_ids=ids, query_embeds=query_tokens.expand(3, -1, -1)), query_length=Q,
               attention_mask=full_mask, encoder_hidden_states=image).last_hidden_state
    assert max_diff(a, b) <= 1e-4


def test_cross_attention_layers_match_transformers_at_every_frequency():
    for freq in (1, 2, 3, 5):
        ours, hf, _, _ = pair(0, freq)
        theirs = [i for i, layer in enumerate(hf.encoder.layer) if layer.has_cross_attention]
        assert ours.cross_attention_layers == theirs == [i for i in range(4) if i % freq == 0]


def test_key_mapping_is_a_bijection():
    ours, hf, _, _ = pair(0)
    keys = list(ours.state_dict())
    mapped = [reference_to_hf_key(k) for k in keys]
    assert len(set(mapped)) == len(keys)
    assert [hf_to_reference_key(k) for k in mapped] == keys
    assert {k[len("qformer."):] for k in mapped if k.startswith("qformer.")} == set(hf.state_dict())


def test_export_then_import_is_the_identity():
    ours, _, _, _ = pair(5)
    back = import_from_hf(export_to_hf(ours.state_dict()))
    assert set(back) == set(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(back[key], value)


def test_unknown_reference_key_is_named():
    with pytest.raises(KeyError, match="layers.0.nonsense.weight"):
        reference_to_hf_key("layers.0.nonsense.weight")


def test_stage1_heads_match_blip2_for_image_text_retrieval():
    """ITM logits and the (unscaled) ITC max-over-queries similarity of the reference heads equal
    transformers' Blip2ForImageTextRetrieval with its weights imported (its vision tower supplies the
    image features to both)."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    from reference.blip2.convert import import_stage1_from_hf
    from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config

    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        qformer_config=dict(**SIZES, cross_attention_frequency=2, encoder_hidden_size=24,
                            use_qformer_text_input=True),
        num_query_tokens=6, image_text_hidden_size=16)
    config.qformer_config._attn_implementation = "eager"
    hf = Blip2ForImageTextRetrieval(config).eval()
    with torch.no_grad():  # post_init leaves the query tokens at zero: make them matter
        hf.query_tokens.normal_(std=0.02)
    q = QFormerConfig(**SIZES, encoder_width=24, num_query_tokens=6, attn_implementation="eager")
    ours = Blip2Stage1(Blip2Stage1Config(qformer=q, embed_dim=16, cls_token_id=1, sep_token_id=2, dec_token_id=3))
    result = ours.eval().load_state_dict(import_stage1_from_hf(hf.state_dict()), strict=False)
    assert set(result.missing_keys) == {"lm_head.dense.weight", "lm_head.dense.bias", "lm_head.norm.weight",
                                        "lm_head.norm.bias", "lm_head.bias", "temp"}
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _, ids, mask = inputs(2)
    with torch.no_grad():
        image = hf.vision_model(pixel_values=pixels).last_hidden_state
        itm_hf = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True)
        itc_hf = hf(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        itm = ours.itm_logits(image, ids, mask)
        itc = (ours.image_features(image) @ ours.text_features(ids, mask).t()).max(dim=1).values
    assert max_diff(itm, itm_hf.logits_per_image) <= TOL
    assert max_diff(itc, itc_hf.logits_per_image) <= TOL
