"""A re-creation, in our own code and from the published descriptions (docs/design.md §4, §8), of the public BLIP-2
stage-1 code's pitfalls (LAVIS `blip2_qformer`), to show that the qformer cases catch them.

Checked against the public code (salesforce/LAVIS: lavis/models/blip2_models/blip2_qformer.py Blip2Qformer.forward
and generate, lavis/models/base_model.py concat_all_gather / all_gather_with_grad, lavis/models/blip2_models/blip2.py
compute_sim_matrix) and against the installed package (salesforce-lavis 1.0.2 with transformers 4.26.1, the newest
its pin `transformers<4.27,>=4.25.0` admits; see cases/adapters/lavis.py).

`LavisQFormer(name, bugs)` switches each behaviour on separately, on top of the reference model:
- 107: hard negatives = torch.multinomial(softmax(sim)) per row, positives masked with -10000: a NaN / inf
       similarity raises, and a row whose columns are all positives draws a positive.
- "inplace": that -10000 fill is done IN PLACE on the similarity tensors the ITC loss was computed from.
- 285: ITC targets are arange(B) even when image ids are given: captions of the same image are negatives (the code
       before the `image_id` branch; salesforce-lavis 1.0.2 has no such branch). Without ids the public code's
       arange targets are right, and so is this replica's.
- "temp": the ITC temperature is used without the [0.001, 0.5] clamp.
- "squeeze": the similarity is `matmul(...).squeeze()`, which drops the image / text / query axis of size 1.
- 537: the stage-1 loss calls `dist.get_rank()` (and gathers the ITM images with `all_gather_with_grad`, whose
       `get_world_size()` is unguarded): no process group -> ValueError. The feature gather itself is guarded.
- "nograd": the feature gather is `concat_all_gather`: torch.distributed.all_gather under `@torch.no_grad()`, so
       inside a process group the gathered features carry no gradient (without a group it returns its input).
- 267: the LM (and ITM) cross-entropy runs in the model's dtype: label smoothing over 30522 words -> inf in fp16.
- 154: generation never uses its cache: with transformers 4.26 `prepare_inputs_for_generation(..., past=None)`
       never receives the renamed `past_key_values`, so every step recomputes queries, cross-attention and the whole
       text. (Beam search works with that pin; the double beam expansion of #154 / #211 needs transformers >= 4.27.)
- "topk": retrieval re-ranking calls `topk(k_test)` unclipped: k larger than the candidates raises.
`LAVIS_QFORMER` has all of them (expected failures: expected_failures/lavis-qformer.txt); `LAVIS_ONLY[bug]` has one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from reference.blip2 import captioner
from reference.blip2.api import QFormerReference
from reference.blip2.losses import decoder_inputs

ALL_BUGS = frozenset({107, "inplace", 285, "temp", "squeeze", 537, "nograd", 267, 154, "topk"})
FILL = -100.0  # compute_sim_matrix's score outside the top k


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """The public feature gather: its input without a process group, else all_gather with no autograd."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    gathered = [torch.ones_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x, async_op=False)
    return torch.cat(gathered, dim=0)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The public gather of the ITM images: asks for the world size without checking a group exists."""
    if dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


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
        return concat_all_gather(x) if "nograd" in self.bugs else super().gather_features(x)

    # -- retrieval -------------------------------------------------------------------------------
    def rerank_scores(self, sim, itm_score, k):
        if "topk" not in self.bugs:
            return super().rerank_scores(sim, itm_score, k)
        sim = torch.as_tensor(sim).float()
        out = []
        for matrix, swap in ((sim, False), (sim.t(), True)):
            scores = torch.full_like(matrix, FILL)
            for r in range(matrix.shape[0]):
                top_sim, top_idx = matrix[r].topk(k=k, dim=0)  # unclipped: k > candidates raises
                rows = torch.full_like(top_idx, r)
                pair = (top_idx, rows) if swap else (rows, top_idx)
                scores[r, top_idx] = torch.as_tensor(itm_score(*pair)).float() + top_sim
            out.append(scores)
        return out[0], out[1]

    # -- the stage-1 forward ---------------------------------------------------------------------
    def losses(self, model, image_embeds, input_ids, attention_mask, image_ids=None, generator=None):
        B, cfg = image_embeds.shape[0], model.config
        ids = torch.arange(B) if image_ids is None else torch.as_tensor(image_ids)
        if 537 in self.bugs:
            dist.get_rank()  # `rank = dist.get_rank()` before the ITC targets
            all_gather_with_grad(image_embeds)  # the ITM images
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
        # the cache argument is never received: every step recomputes queries, cross-attention and text
        return captioner.generate(model, image_embeds, num_beams, max_length, min_length, use_cache=False)


LAVIS_QFORMER = LavisQFormer("lavis-qformer", ALL_BUGS)
# one switch each (spec cases.known_bad.lavis_qformer:LAVIS_ONLY_<SWITCH>), for tests/test_blip2_known_bad.py
LAVIS_ONLY_107 = LavisQFormer("lavis-107", {107})
LAVIS_ONLY_INPLACE = LavisQFormer("lavis-inplace", {"inplace"})
LAVIS_ONLY_285 = LavisQFormer("lavis-285", {285})
LAVIS_ONLY_TEMP = LavisQFormer("lavis-temp", {"temp"})
LAVIS_ONLY_SQUEEZE = LavisQFormer("lavis-squeeze", {"squeeze"})
LAVIS_ONLY_537 = LavisQFormer("lavis-537", {537})
LAVIS_ONLY_NOGRAD = LavisQFormer("lavis-nograd", {"nograd"})
LAVIS_ONLY_267 = LavisQFormer("lavis-267", {267})
LAVIS_ONLY_154 = LavisQFormer("lavis-154", {154})
LAVIS_ONLY_TOPK = LavisQFormer("lavis-topk", {"topk"})
