"""A re-creation, in our own code and from the published descriptions (DESIGN.md §4), of the public BLIP-2
stage-1 code's pitfalls (LAVIS `blip2_qformer`), to show that the qformer cases catch them.

`LavisQFormer(bugs)` switches each behaviour on separately, on top of the reference model:
- 107: hard negatives = torch.multinomial(softmax(sim)) per row, positives masked with -10000: a NaN / inf
       similarity raises, and a row whose columns are all positives draws a positive.
- "inplace": that -10000 fill is done IN PLACE on the similarity tensors the ITC loss was computed from.
- 285: ITC targets are arange(B): captions of the same image are negatives of each other.
- "temp": the ITC temperature is used without the [0.001, 0.5] clamp.
- "squeeze": the similarity is `matmul(...).squeeze()`, which drops the image / text / query axis of size 1.
- 537: ids are gathered with torch.distributed unconditionally: no process group -> RuntimeError/ValueError.
- 267: the LM (and ITM) cross-entropy runs in the model's dtype: label smoothing over 30522 words -> inf in fp16.
- 154: generation never uses its cache (the cache argument was renamed, so every step recomputes) and beam
       search expands the image features for the beams twice (size mismatch).
`LAVIS_QFORMER` has all of them (expected failures: expected_failures/lavis-qformer.txt).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from reference.blip2 import captioner
from reference.blip2.api import QFormerReference
from reference.blip2.losses import decoder_inputs

ALL_BUGS = frozenset({107, "inplace", 285, "temp", "squeeze", 537, 267, 154})


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """The public helper: asks torch.distributed for the world size without checking it is initialised."""
    gathered = [torch.ones_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x, async_op=False)
    return torch.cat(gathered, dim=0)


class LavisQFormer(QFormerReference):
    def __init__(self, name: str, bugs) -> None:
        self.name = name
        self.bugs = frozenset(bugs)

    # -- ITC -------------------------------------------------------------------------------------
    def itc_similarity(self, image_feats, text_feats):
        if "squeeze" not in self.bugs:
            return super().itc_similarity(image_feats, text_feats)
        per_query = torch.matmul(image_feats.unsqueeze(1), text_feats.unsqueeze(-1)).squeeze()  # (Bi, Bt, Q)?
        return per_query.max(-1).values

    def itc_loss(self, image_feats, text_feats, temp, image_ids=None):
        if not {285, "temp", "squeeze"} & self.bugs:
            return super().itc_loss(image_feats, text_feats, temp, image_ids)
        temp = torch.as_tensor(temp, dtype=torch.float32)
        if "temp" not in self.bugs:
            temp = temp.clamp(0.001, 0.5)
        sim_i2t = self.itc_similarity(image_feats, text_feats) / temp
        sim_t2i = self.itc_similarity(image_feats, text_feats).t() / temp
        B = image_feats.shape[0]
        if 285 in self.bugs or image_ids is None:
            targets = torch.arange(B)
        else:
            pos = (torch.as_tensor(image_ids)[:, None] == torch.as_tensor(image_ids)[None, :]).float()
            targets = pos / pos.sum(1, keepdim=True)
        return (F.cross_entropy(sim_i2t, targets, label_smoothing=0.1)
                + F.cross_entropy(sim_t2i, targets, label_smoothing=0.1)) / 2

    # -- ITM hard negatives ----------------------------------------------------------------------
    def sample_hard_negatives(self, sim_i2t, image_ids, generator=None):
        if not {107, "inplace"} & self.bugs:
            return super().sample_hard_negatives(sim_i2t, image_ids, generator)
        ids = torch.as_tensor(image_ids).reshape(-1)
        mask = ids[:, None] == ids[None, :]
        with torch.no_grad():
            sim = sim_i2t if "inplace" in self.bugs else sim_i2t.clone()
            sim.masked_fill_(mask, -10000)
            weights_i2t = F.softmax(sim, dim=1)
            weights_t2i = F.softmax(sim.t(), dim=1)
        if 107 not in self.bugs:  # only the in-place fill: sample from the reference on the filled copy
            return super().sample_hard_negatives(sim.clone(), image_ids, generator)
        neg_text = [torch.multinomial(weights_i2t[b].float(), 1, generator=generator).item() for b in range(len(ids))]
        neg_image = [torch.multinomial(weights_t2i[b].float(), 1, generator=generator).item() for b in range(len(ids))]
        return torch.tensor(neg_text), torch.tensor(neg_image)

    def gather_features(self, x):
        return concat_all_gather(x) if 537 in self.bugs else super().gather_features(x)

    # -- the stage-1 forward ---------------------------------------------------------------------
    def losses(self, model, image_embeds, input_ids, attention_mask, image_ids=None, generator=None):
        B, cfg = image_embeds.shape[0], model.config
        ids = torch.arange(B) if image_ids is None else torch.as_tensor(image_ids)
        if 537 in self.bugs:
            ids = concat_all_gather(ids)
        query = model.query_pass(image_embeds, use_cache=True)
        image_feats = F.normalize(model.vision_proj(query.last_hidden_state), dim=-1)
        text_feats = F.normalize(model.text_proj(model.text_pass(input_ids, attention_mask)[:, 0]), dim=-1)
        loss_itc = self.itc_loss(image_feats, text_feats, model.temp, ids)

        sim_i2t = self.itc_similarity(image_feats.detach(), text_feats.detach()).reshape(B, B)
        neg_text, neg_image = self.sample_hard_negatives(sim_i2t, ids, generator)
        itm_images = torch.cat([image_embeds, image_embeds[neg_image], image_embeds])
        itm_ids = torch.cat([input_ids, input_ids, input_ids[neg_text]])
        itm_masks = torch.cat([attention_mask, attention_mask, attention_mask[neg_text]])
        labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long()
        logits = model.itm_logits(itm_images, itm_ids, itm_masks)
        loss_itm = F.cross_entropy(logits if 267 in self.bugs else logits.float(), labels)

        dec_ids, dec_labels = decoder_inputs(input_ids, attention_mask, cfg.dec_token_id)
        full = torch.cat([attention_mask.new_ones(B, cfg.qformer.num_query_tokens), attention_mask], dim=1)
        lm_logits = model.decode(dec_ids, full, query.past_key_values)[:, :-1]
        lm_logits = lm_logits if 267 in self.bugs else lm_logits.float()
        loss_itg = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), dec_labels[:, 1:].reshape(-1),
                                   ignore_index=-100, label_smoothing=0.1)
        return {"itc": loss_itc, "itm": loss_itm, "itg": loss_itg, "loss": loss_itc + loss_itm + loss_itg}

    # -- captioning ------------------------------------------------------------------------------
    def generate(self, model, image_embeds, num_beams=3, max_length=30, min_length=10, use_cache=True):
        if 154 not in self.bugs:
            return super().generate(model, image_embeds, num_beams, max_length, min_length, use_cache)
        if num_beams > 1:
            B, Q = image_embeds.shape[0], model.config.qformer.num_query_tokens
            embeds = image_embeds.repeat_interleave(num_beams, dim=0)  # the model expands for its beams ...
            embeds = embeds.repeat_interleave(num_beams, dim=0)  # ... and generate() expands the kwargs again
            tokens = torch.full((B * num_beams, 1), model.config.dec_token_id, dtype=torch.long)
            with torch.no_grad():  # the first decoding step: B*beams texts against B*beams*beams images
                model.qformer(input_ids=tokens, attention_mask=torch.ones(B * num_beams, Q + 1, dtype=torch.long),
                              image_embeds=embeds, causal=True)
        # the cache argument is never received: every step recomputes queries, cross-attention and text
        return captioner.generate(model, image_embeds, num_beams, max_length, min_length, use_cache=False)


LAVIS_QFORMER = LavisQFormer("lavis-qformer", ALL_BUGS)
