"""Family `qformer`: a BLIP-2 Q-Former (stage 1: ITC / ITM / ITG), cut where re-implementations differ.

Conventions (shared by every part):
- `build(config)` takes a flat dict: vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
  num_query_tokens, cross_attention_freq, image_width (width of the frozen image features), embed_dim (ITC
  space), max_text_len, pad_token_id, cls_token_id, sep_token_id, dec_token_id, and optionally dtype
  ("float32" default, "float16", "bfloat16"). It returns a model with random weights (seeded by the caller's
  torch.manual_seed), in eval mode (no dropout), on the CPU. `model` below is what build returned.
- image_embeds (B, N, image_width) frozen image features; input_ids (B, T) long, [CLS] text [SEP] [PAD]...;
  attention_mask (B, T) long, 1 = token; decoder ids are input ids whose first token is [DEC];
  image_ids (B,) long tensor, any integer values: texts with equal ids describe the same image. Text b belongs
  to image b.
- Same-image positives. WITH image_ids, every caption whose id equals row b's is a positive of row b (ITC targets
  spread uniformly over them, then label smoothing 0.1; ITM never draws them as negatives). WITHOUT image_ids
  (None) nothing says two rows show one image, so row b's only positive is its own pair (b, b): targets are the
  diagonal, as in the paper's pre-training on web pairs and in the public code's branch without `image_id`; an
  implementation must not guess same-image pairs from equal features or equal texts.
- Features: image_feats (Bi, Q, E) and text_feats (Bt, E), L2-normalised.
- Retrieval re-ranking: with k larger than a row's number of candidates, every candidate of that row is re-scored.
"""

import contextlib

from cases.interface import Family

FAMILY = Family(
    name="qformer",
    reference_spec="reference.blip2.api:REFERENCE",
    parts={
        "build": "build(config: dict) -> model (random weights, eval mode, CPU)",
        "query_pass": "query_pass(model, image_embeds) -> (B, Q, H) query outputs of the unimodal pass",
        "text_pass": "text_pass(model, input_ids, attention_mask) -> (B, T, H) unimodal text outputs",
        "itm_pass": "itm_pass(model, image_embeds, input_ids, attention_mask) -> (B, Q+T, H), bidirectional",
        "itm_logits": "itm_logits(model, image_embeds (B,N,D), input_ids (B,T), attention_mask (B,T)) -> (B, 2) ITM "
                      "logits of each pair (image b, text b); column 1 = match",
        "itc_scores": "itc_scores(model, image_embeds (Bi,N,D), input_ids (Bt,T), attention_mask (Bt,T)) -> (Bi, Bt) "
                      "ITC similarity of the model's normalised features, max over queries, no temperature",
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
                    "LongTensor (B, L) generated ids after [DEC], [SEP] included when produced, then pad; lengths count "
                    "the tokens after [DEC]: L <= max_length, no [SEP] before position min_length",
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


@contextlib.contextmanager
def one_process_group():
    """A torch.distributed process group of ONE process (gloo, in-memory store) for the block, so that a case about
    another stage is not stopped first by code that assumes torch.distributed is initialised (LAVIS #537, tested
    on its own by cases/test_qformer_lavis537_no_process_group.py). An existing group is left as it is."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build: the case needs a process group")
    if dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
