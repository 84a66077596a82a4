"""A re-creation, in our own code and from the published code's behaviour, of the pitfalls of the public ALBEF
pre-training code (salesforce/ALBEF models/model_pretrain.py, models/xbert.py), to show that the albef cases catch
them. `AlbefPublic(name, bugs)` switches each behaviour on separately, on top of the reference:

- "random_queue": `register_buffer("image_queue", torch.randn(embed_dim, queue_size))`, normalised: a fresh queue
  holds N random unit vectors (id -100, as BLIP's idx_queue) that act as keys until they are overwritten.
- "divisible_queue": `_dequeue_and_enqueue` asserts `queue_size % batch_size == 0` and writes
  `queue[:, ptr:ptr + batch_size]` (BLIP #101).
- "diagonal_targets": ITC targets `sim_targets.fill_diagonal_(1)`: captions of the same image, in the batch or the
  queue, are negatives (ALBEF #126; BLIP's retrieval code overwrites its id targets the same way, BLIP #41).
- "multinomial": ITM negatives `torch.multinomial(softmax(sim)[b], 1)` per row after `fill_diagonal_(0)` (plus
  `eps` for BLIP's 1e-4): batch 1 and NaN rows raise (ALBEF #18, #93, #107), same-image captions are drawn (#126).
- "mask_sep": `mask()` protects [PAD] and [CLS] only, so [SEP] is masked (ALBEF's own tokenizer drops it, #75).
- "mask_inplace": `mask()` writes [MASK] / random words into the tensor it is given.
- "mlm_nan": `CrossEntropyLoss()` and `loss_distill[labels != -100].mean()`: NaN when nothing was masked.
- "no_process_group": `concat_all_gather` calls `torch.distributed.get_world_size()` unconditionally (ALBEF #139).

`ALBEF_PUBLIC` has all of them (expected failures: expected_failures/albef-public.txt).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.albef.api import AlbefReference, special_ids
from reference.albef.queue import FeatureQueue, FeatureQueueConfig

ALL_BUGS = frozenset({"random_queue", "divisible_queue", "diagonal_targets", "multinomial", "mask_sep",
                      "mask_inplace", "mlm_nan", "no_process_group"})


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """ALBEF's feature gather (models/model_pretrain.py): asks for the world size without checking that a
    process group exists (ALBEF #139); LAVIS later guarded its copy, ALBEF's is not."""
    import torch.distributed as dist

    gathered = [torch.ones_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x, async_op=False)
    return torch.cat(gathered, dim=0)


class PublicQueue(FeatureQueue):
    """The public queue: optionally random-initialised, optionally asserting that the batch divides the size."""

    def __init__(self, size: int, embed_dim: int, random_init: bool, divisible: bool) -> None:
        super().__init__(FeatureQueueConfig(size, embed_dim))
        self.divisible = divisible
        if random_init and size:
            self.image.copy_(F.normalize(torch.randn(size, embed_dim), dim=1))
            self.text.copy_(F.normalize(torch.randn(size, embed_dim), dim=1))
            self.ids.fill_(-100)
            self.count.fill_(size)

    @torch.no_grad()
    def enqueue(self, image_feats, text_feats, image_ids) -> None:
        if not self.divisible:
            return super().enqueue(image_feats, text_feats, image_ids)
        batch_size, ptr = image_feats.shape[0], int(self.ptr)
        assert self.config.size % batch_size == 0  # for simplicity
        self.image[ptr:ptr + batch_size] = image_feats
        self.text[ptr:ptr + batch_size] = text_feats
        self.ids[ptr:ptr + batch_size] = torch.as_tensor(image_ids).reshape(-1)
        self.ptr.fill_((ptr + batch_size) % self.config.size)
        self.count.copy_(torch.clamp(self.count + batch_size, max=self.config.size))


class AlbefPublic(AlbefReference):
    eps = 0.0  # added to the ITM sampling weights (BLIP's pre-training adds 1e-4)

    def __init__(self, name: str, bugs) -> None:
        self.name = name
        self.bugs = frozenset(bugs)

    def make_queue(self, size, embed_dim):
        return PublicQueue(size, embed_dim, "random_queue" in self.bugs, "divisible_queue" in self.bugs)

    def itc_queue_loss(self, image_feat, text_feat, image_feat_m, text_feat_m, queue_image, queue_text, queue_ids,
                       image_ids, temp, alpha):
        if "diagonal_targets" not in self.bugs:
            return super().itc_queue_loss(image_feat, text_feat, image_feat_m, text_feat_m, queue_image, queue_text,
                                          queue_ids, image_ids, temp, alpha)
        image_feat_all = torch.cat([image_feat_m.t(), queue_image.t()], dim=1)  # (E, B + n)
        text_feat_all = torch.cat([text_feat_m.t(), queue_text.t()], dim=1)
        with torch.no_grad():
            sim_i2t_m = image_feat_m @ text_feat_all / temp
            sim_t2i_m = text_feat_m @ image_feat_all / temp
            sim_targets = torch.zeros(sim_i2t_m.size())
            sim_targets.fill_diagonal_(1)
            sim_i2t_targets = alpha * F.softmax(sim_i2t_m, dim=1) + (1 - alpha) * sim_targets
            sim_t2i_targets = alpha * F.softmax(sim_t2i_m, dim=1) + (1 - alpha) * sim_targets
        sim_i2t = image_feat @ text_feat_all / temp
        sim_t2i = text_feat @ image_feat_all / temp
        loss_i2t = -torch.sum(F.log_softmax(sim_i2t, dim=1) * sim_i2t_targets, dim=1).mean()
        loss_t2i = -torch.sum(F.log_softmax(sim_t2i, dim=1) * sim_t2i_targets, dim=1).mean()
        return (loss_i2t + loss_t2i) / 2

    def itm_negatives(self, sim_i2t, image_ids, generator=None):
        if "multinomial" not in self.bugs:
            return super().itm_negatives(sim_i2t, image_ids, generator)
        bs = sim_i2t.shape[0]
        with torch.no_grad():
            weights_i2t = F.softmax(sim_i2t, dim=1) + self.eps
            weights_i2t.fill_diagonal_(0)
            weights_t2i = F.softmax(sim_i2t.t(), dim=1) + self.eps
            weights_t2i.fill_diagonal_(0)
        neg_image = [torch.multinomial(weights_t2i[b].float(), 1, generator=generator).item() for b in range(bs)]
        neg_text = [torch.multinomial(weights_i2t[b].float(), 1, generator=generator).item() for b in range(bs)]
        return torch.tensor(neg_text), torch.tensor(neg_image)

    def mask_tokens(self, input_ids, attention_mask, tokens, generator=None):
        if not {"mask_sep", "mask_inplace"} & self.bugs:
            return super().mask_tokens(input_ids, attention_mask, tokens, generator)
        input_ids = input_ids if "mask_inplace" in self.bugs else input_ids.clone()
        targets = input_ids.clone()
        probability_matrix = torch.full(input_ids.shape, float(tokens.get("probability", 0.15)))
        masked_indices = torch.bernoulli(probability_matrix, generator=generator).bool()
        protected = [tokens["pad"], tokens["cls"]] if "mask_sep" in self.bugs else special_ids(tokens)
        for token in protected:
            masked_indices[input_ids == token] = False
        targets[~masked_indices] = -100
        indices_replaced = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & masked_indices
        input_ids[indices_replaced] = tokens["mask"]
        indices_random = (torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool()
                          & masked_indices & ~indices_replaced)
        random_words = torch.randint(tokens["vocab_size"], input_ids.shape, dtype=torch.long, generator=generator)
        input_ids[indices_random] = random_words[indices_random]
        return input_ids, targets

    def mlm_loss(self, logits, labels, soft_targets=None, alpha=0.0):
        if "mlm_nan" not in self.bugs:
            return super().mlm_loss(logits, labels, soft_targets, alpha)
        vocab_size = logits.shape[-1]
        masked_lm_loss = torch.nn.CrossEntropyLoss()(logits.reshape(-1, vocab_size), labels.reshape(-1))
        if soft_targets is not None:
            loss_distill = -torch.sum(F.log_softmax(logits, dim=-1) * soft_targets, dim=-1)
            loss_distill = loss_distill[labels != -100].mean()
            masked_lm_loss = (1 - alpha) * masked_lm_loss + alpha * loss_distill
        return masked_lm_loss

    def gather_keys(self, x):
        return concat_all_gather(x) if "no_process_group" in self.bugs else super().gather_keys(x)

    def albef_losses(self, model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None):
        if "no_process_group" not in self.bugs:
            return super().albef_losses(model, patch_feats, input_ids, attention_mask, image_ids, generator)
        return public_step(model, patch_feats, input_ids, attention_mask, image_ids, generator)


def public_step(model, patch_feats, input_ids, attention_mask, image_ids, generator) -> dict:
    """The public step order: momentum update, the losses, then `_dequeue_and_enqueue`, which gathers the momentum
    keys with concat_all_gather (and so needs a process group)."""
    model.update_momentum()
    out = model(patch_feats, input_ids, attention_mask, image_ids=image_ids, generator=generator, update_state=False)
    with torch.no_grad():
        image_feat_m = model.image_pass(patch_feats, momentum=True)[1]
        text_feat_m = model.text_pass(input_ids, attention_mask, momentum=True)[1]
        ids = torch.arange(patch_feats.shape[0]) if image_ids is None else torch.as_tensor(image_ids)
        model.queue.enqueue(concat_all_gather(image_feat_m), concat_all_gather(text_feat_m), concat_all_gather(ids))
    return out


ALBEF_PUBLIC = AlbefPublic("albef-public", ALL_BUGS)
