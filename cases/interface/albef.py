"""Family `albef`: the ALBEF mechanisms (momentum encoders, feature queue, ITC with the queue and momentum
distillation, ITM hard negatives, MLM), cut where re-implementations differ. BLIP inherits all but MLM.

Conventions (shared by every part):
- Features are L2-normalised rows: image_feat / text_feat (B, E) of the online encoders, image_feat_m / text_feat_m
  (B, E) of the momentum encoders; a queue holds n keys: queue_image, queue_text (n, E) and queue_ids (n,).
- image_ids (B,) long: pairs with equal ids share an image (their captions are positives of each other, in the batch
  and in the queue). Text b belongs to image b.
- Token ids follow TOKENS below; input_ids (B, T) are [CLS] words [SEP] [PAD]..., attention_mask (B, T) 1 = token.
- `build_albef(config)` takes TINY_CONFIG's keys and returns a model with random weights (seeded by the caller's
  torch.manual_seed), in eval mode (no dropout), on the CPU; patch_feats (B, N, patch_width) are frozen patch
  features the model's trainable image encoder reads.
"""

from cases.interface import Family
from cases.interface.qformer import TINY_CONFIG as QFORMER_TINY, random_batch as qformer_batch

FAMILY = Family(
    name="albef",
    reference_spec="reference.albef.api:REFERENCE",
    parts={
        "momentum_copy": "momentum_copy(module) -> momentum module: equal values, new parameter objects, no gradient",
        "ema_update": "ema_update(online, momentum, m) -> None: in place, every p_m <- m * p_m + (1 - m) * p",
        "make_queue": "make_queue(size, embed_dim) -> queue with .enqueue(image_feats (B,E), text_feats (B,E), "
                      "image_ids (B,)) and .contents() -> (image (n,E), text (n,E), ids (n,)), the keys held",
        "itc_queue_loss": "itc_queue_loss(image_feat, text_feat, image_feat_m, text_feat_m, queue_image, queue_text, queue_ids, "
                    "image_ids, temp, alpha) -> scalar: ITC over [batch ; queue] columns, soft targets mixed by alpha",
        "itm_negatives": "itm_negatives(sim_i2t (B,B), image_ids (B,), generator=None) -> (negative "
                                 "text per image, negative image per text) long, -1 where no negative exists",
        "mask_tokens": "mask_tokens(input_ids, attention_mask, tokens: dict, generator=None) -> (masked ids, labels) "
                       "(B, T): 15% of the words selected, 80/10/10, labels -100 where not selected",
        "mlm_loss": "mlm_loss(logits (B,T,V), labels (B,T), soft_targets (B,T,V) or None, alpha) -> scalar",
        "gather_keys": "gather_keys(x (B,...)) -> (W*B,...) across processes; x itself without a process group",
        "build_albef": "build_albef(config: dict) -> ALBEF model (random weights, eval mode, CPU)",
        "albef_losses": "albef_losses(model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None) "
                        "-> dict of scalar 'itc', 'itm', 'mlm' (one training step: momentum update and enqueue)",
    },
)

# Part names are unique across families (one object may implement several): ALBEF's sampler and gather have the
# qformer family's contracts under their own names.

# Token ids of the cases: the qformer family's ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [DEC] 4, words from 5) with
# [MASK] appended at the end of the vocabulary, as BLIP appends its extra special tokens.
TOKENS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "dec": 4, "mask": 39, "vocab_size": 40, "probability": 0.15}
SPECIAL_IDS = (0, 1, 2, 3, 4, 39)

# A model small enough for many examples on one CPU core.
TINY_CONFIG = {
    "vocab_size": 40, "hidden_size": 32, "num_text_layers": 1, "num_fusion_layers": 1, "num_heads": 4,
    "intermediate_size": 48, "patch_width": 24, "image_dim": 32, "image_depth": 1, "embed_dim": 16,
    "max_text_len": 16, "queue_size": 8, "momentum": 0.995, "alpha": 0.4,
    "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "mask_token_id": 39, "special_token_ids": SPECIAL_IDS,
}


def random_batch(batch: int, text_len: int, num_patches: int = 6, seed: int = 0, patch_width: int = 24):
    """(patch_feats (B, N, patch_width), input_ids (B, T) [CLS] words [SEP] pads, attention_mask (B, T)), seeded;
    the words are drawn from 5..38 (never [MASK])."""
    config = {**QFORMER_TINY, "vocab_size": TOKENS["mask"], "image_width": patch_width}
    return qformer_batch(config, batch, text_len, num_patches, seed)


def unit_rows(n: int, dim: int, seed: int):
    """n random L2-normalised rows (n, dim)."""
    import torch

    return torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def single_process_step(api, build_part: str, losses_part: str, config: dict, keys: tuple[str, ...]) -> None:
    """Build a tiny model, run one training step on a batch holding two captions of one image, without any process
    group, and check that each named loss is finite."""
    import torch

    step = getattr(api, losses_part)
    torch.manual_seed(0)
    model = getattr(api, build_part)(config)
    feats, ids, mask = random_batch(3, 8, patch_width=config["patch_width"])
    out = step(model, feats, ids, mask, image_ids=torch.tensor([0, 0, 1]),
                                    generator=torch.Generator().manual_seed(0))
    for key in keys:
        assert torch.isfinite(torch.as_tensor(out[key])), f"{key} loss is {float(out[key])}"
