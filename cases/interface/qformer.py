"""Family `qformer`: a BLIP-2 Q-Former (stage 1: ITC / ITM / ITG), cut where re-implementations differ.

Conventions (shared by every part):
- `build(config)` takes a flat dict: vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
  num_query_tokens, cross_attention_freq, image_width (width of the frozen image features), embed_dim (ITC
  space), max_text_len, pad_token_id, cls_token_id, sep_token_id, dec_token_id, and optionally dtype
  ("float32" default, "float16", "bfloat16"). It returns a model with random weights (seeded by the caller's
  torch.manual_seed), in eval mode (no dropout), on the CPU. `model` below is what build returned.
- image_embeds (B, N, image_width) frozen image features; input_ids (B, T) long, [CLS] text [SEP] [PAD]...;
  attention_mask (B, T) long, 1 = token; decoder ids are input ids whose first token is [DEC];
  image_ids (B,) long: texts with equal ids describe the same image. Text b belongs to image b.
- Features: image_feats (Bi, Q, E) and text_feats (Bt, E), L2-normalised.
"""

from cases.interface import Family

FAMILY = Family(
    name="qformer",
    reference_spec="reference.blip2.api:REFERENCE",
    parts={
        "build": "build(config: dict) -> model (random weights, eval mode, CPU)",
        "query_pass": "query_pass(model, image_embeds) -> (B, Q, H) query outputs of the unimodal pass",
        "text_pass": "text_pass(model, input_ids, attention_mask) -> (B, T, H) unimodal text outputs",
        "itm_pass": "itm_pass(model, image_embeds, input_ids, attention_mask) -> (B, Q+T, H), bidirectional",
        "itg_logits": "itg_logits(model, image_embeds, decoder_ids, attention_mask) -> (B, T, V) decoder logits "
                      "(queries' keys/values from the query pass)",
        "losses": "losses(model, image_embeds, input_ids, attention_mask, image_ids=None, generator=None) -> "
                  "dict with scalar tensors 'itc', 'itm', 'itg'",
        "itc_similarity": "itc_similarity(image_feats (Bi,Q,E), text_feats (Bt,E)) -> (Bi, Bt): max over queries",
        "itc_loss": "itc_loss(image_feats (B,Q,E), text_feats (B,E), temp, image_ids=None) -> scalar; "
                    "temperature clamped to [0.001, 0.5]; same-id captions are positives",
        "sample_hard_negatives": "sample_hard_negatives(sim_i2t (Bi,Bt), image_ids (B,), generator=None) -> "
                                 "(negative text per image (Bi,), negative image per text (Bt,)) long, -1 where "
                                 "no negative exists; inputs unchanged",
        "gather_features": "gather_features(x (B,...)) -> (W*B,...) across processes; x itself without a "
                           "process group",
        "generate": "generate(model, image_embeds, num_beams, max_length, min_length, use_cache=True) -> "
                    "LongTensor (B, L) generated ids after [DEC], [SEP] included when produced, then pad",
        "rerank_scores": "rerank_scores(sim (Ni,Nt), itm_score(img_idx, txt_idx) -> (M,), k) -> "
                         "(score_i2t (Ni,Nt), score_t2i (Nt,Ni)): ITM + ITC on each row's top k, lower elsewhere",
    },
)

# A config small enough for many hypothesis examples on one CPU core.
TINY_CONFIG = {
    "vocab_size": 40, "hidden_size": 32, "num_layers": 3, "num_heads": 4, "intermediate_size": 48,
    "num_query_tokens": 4, "cross_attention_freq": 2, "image_width": 24, "embed_dim": 16, "max_text_len": 32,
    "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "dec_token_id": 4,
}
FIRST_WORD_ID = 5  # ids below are special tokens in TINY_CONFIG


def random_batch(config: dict, batch: int, text_len: int, num_patches: int = 6, seed: int = 0):
    """(image_embeds (B, N, image_width), input_ids (B, T) [CLS] words [SEP] pads, attention_mask (B, T))
    with random lengths, from a seeded generator."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, num_patches, config["image_width"], generator=gen)
    ids = torch.randint(FIRST_WORD_ID, config["vocab_size"], (batch, text_len), generator=gen)
    lengths = torch.randint(3, text_len + 1, (batch,), generator=gen)
    lengths[0] = text_len
    positions = torch.arange(text_len)[None, :]
    ids[:, 0] = config["cls_token_id"]
    ids[positions == (lengths[:, None] - 1)] = config["sep_token_id"]
    ids = ids.masked_fill(positions >= lengths[:, None], config["pad_token_id"])
    return images, ids, (positions < lengths[:, None]).long()
