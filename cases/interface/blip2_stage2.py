"""Family `blip2-stage2`: BLIP-2 stage 2, the Q-Former's query outputs as soft prompts of a frozen causal LM.

Conventions (shared by every part):
- `build(config)` takes a flat dict: the Q-Former's vocab_size, hidden_size, num_layers, num_heads,
  intermediate_size, num_query_tokens, cross_attention_freq, image_width, max_text_len, pad_token_id; the
  LM's lm_hidden_size, lm_layers, lm_heads, lm_max_positions, bos_token_id, eos_token_id (the LM shares the
  vocabulary). It returns a model with random weights (seeded by the caller's torch.manual_seed), in eval
  mode, on the CPU, its LM frozen. `model` below is what build returned.
- image_embeds (B, N, image_width) frozen image features; input_ids (B, T) long, [BOS] words [EOS] [PAD]...;
  attention_mask (B, T) long, 1 = token. Labels use -100 for "no target"; position t predicts label t + 1.
"""

from cases.interface import Family

FAMILY = Family(
    name="blip2-stage2",
    reference_spec="reference.blip2.stage2_api:REFERENCE",
    parts={
        "build": "build(config: dict) -> model (random weights, eval mode, CPU, LM frozen)",
        "language_model": "language_model(model) -> the causal LM (torch module called with inputs_embeds=, "
                          "attention_mask=; its output has .logits (B, L, V); get_input_embeddings())",
        "prompts": "prompts(model, image_embeds) -> (B, Q, H_lm) soft visual prompts (Q-Former -> projection)",
        "lm_inputs": "lm_inputs(model, image_embeds, input_ids, attention_mask) -> (inputs_embeds (B, Q+T, H_lm), "
                     "attention_mask (B, Q+T), labels (B, Q+T)): what the LM is given",
        "loss": "loss(model, image_embeds, input_ids, attention_mask) -> scalar next-token loss of the text",
        "optimizer": "optimizer(model, lr, weight_decay) -> torch.optim.Optimizer of stage 2",
        "generate": "generate(model, image_embeds, num_beams, max_length, min_length, use_cache=True) -> "
                    "LongTensor (B, L) generated ids after [BOS], [EOS] included when produced, then pad",
    },
)

TINY_CONFIG = {
    "vocab_size": 40, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 48,
    "num_query_tokens": 4, "cross_attention_freq": 2, "image_width": 24, "max_text_len": 32, "pad_token_id": 0,
    "lm_hidden_size": 32, "lm_layers": 2, "lm_heads": 4, "lm_max_positions": 48, "bos_token_id": 2,
    "eos_token_id": 3,
}
FIRST_WORD_ID = 5  # ids below are special tokens in TINY_CONFIG


def random_batch(config: dict, batch: int, text_len: int, num_patches: int = 6, seed: int = 0):
    """(image_embeds (B, N, image_width), input_ids (B, T) [BOS] words [EOS] pads, attention_mask (B, T)),
    random lengths (the first row full), from a seeded generator: the qformer family's batch with [BOS] /
    [EOS] in the roles of [CLS] / [SEP]."""
    from cases.interface.qformer import random_batch as qformer_batch

    roles = {"cls_token_id": config["bos_token_id"], "sep_token_id": config["eos_token_id"]}
    return qformer_batch({**config, **roles}, batch, text_len, num_patches, seed)
