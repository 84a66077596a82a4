"""Image-text retrieval as the public code does it (compute_sim_matrix): ITC similarity for every pair, then
for each image its top-k texts (and for each text its top-k images) re-scored as ITM + ITC; everything outside
the top-k keeps the fill value -100, below any re-scored pair. (The paper says ITM re-ranks; the public code
adds the ITC similarity, LAVIS #645 — this follows the code and says so.) Recall@K in both directions.

Re-ranking cost: the public loop runs the full multimodal pass per pair, so each image's 257 x 1408 features are
projected to cross-attention keys/values once per pair (k times for its own top-k, again for every text whose
top-k holds it). `SharedImageITM` with `rerank_scores(per_image=True)` projects each image once and scores all of
its candidate texts (from both directions) in batched passes over those shared keys/values; the scores equal the
per-pair pass up to float rounding (tests/test_qformer_kv_reuse.py).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from reference.blip2.losses import itc_similarity
from reference.blip2.qformer import gather_image_kv

FILL = -100.0  # score of pairs outside the top-k


def rerank_scores(sim: torch.Tensor, itm_score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], k: int,
                  batch_size: int = 256, per_image: bool = False, directions: tuple[str, ...] = ("i2t", "t2i")
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Final retrieval scores from the ITC similarity sim (Ni, Nt).

    itm_score(image_idx (M,), text_idx (M,)) -> (M,) the ITM match score of those pairs (e.g. the logit of the
    match class); it is called only on the top-k pairs of each row (k is clipped to the number of candidates),
    each pair once even when it is in both directions' top-k, in batches of at most `batch_size`, ordered by
    image; per_image=True: every call holds the pairs of one image only (for `SharedImageITM`). directions:
    which of "i2t" (each image's top-k texts) and "t2i" (each text's top-k images) to re-rank; the other comes
    back all FILL.
    Returns (score_i2t (Ni, Nt), score_t2i (Nt, Ni)): ITM + ITC on each row's top-k, FILL elsewhere.
    """
    if not directions or set(directions) - {"i2t", "t2i"}:
        raise ValueError(f"directions must be a non-empty subset of ('i2t', 't2i'), got {directions!r}")
    if sim.dim() != 2:
        raise ValueError(f"similarity must be (num_images, num_texts), got shape {tuple(sim.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sim = sim.float()
    Ni, Nt = sim.shape
    tops = []  # (rows, cols) of each direction's top-k, as (image, text) index pairs
    for matrix, swap in ((sim, False), (sim.t(), True)):
        kk = min(k, matrix.shape[1]) if ("t2i" if swap else "i2t") in directions else 0
        top = matrix.topk(kk, dim=1).indices  # (R, kk)
        rows = torch.arange(matrix.shape[0], device=sim.device)[:, None].expand_as(top).reshape(-1)  # (R*kk,)
        cols = top.reshape(-1)
        tops.append((cols, rows) if swap else (rows, cols))
    # a pair in both directions' top-k is scored once
    flat = torch.cat([i * Nt + t for i, t in tops])
    unique, inverse = torch.unique(flat, return_inverse=True)  # sorted: grouped by image
    scores = []
    for chunk in _chunks(unique, Nt, batch_size, per_image):
        scores.append(torch.as_tensor(itm_score(chunk // Nt, chunk % Nt)).float().reshape(-1).to(sim.device))
    itm = torch.cat(scores)[inverse] if scores else torch.zeros(0, device=sim.device)
    i2t = torch.full_like(sim, FILL)
    t2i = torch.full_like(sim.t(), FILL)
    n_i2t = tops[0][0].numel()
    (ri, ci), (rt, ct) = tops
    i2t[ri, ci] = itm[:n_i2t] + sim[ri, ci]
    t2i[ct, rt] = itm[n_i2t:] + sim[rt, ct]
    return i2t, t2i


def _chunks(pairs: torch.Tensor, num_texts: int, batch_size: int, per_image: bool) -> list[torch.Tensor]:
    """Split sorted pair codes (image * num_texts + text) into batches of at most batch_size (of one image each)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    runs = [pairs]
    if per_image and pairs.numel():
        counts = torch.unique_consecutive(pairs // num_texts, return_counts=True)[1]
        runs = list(pairs.split(counts.tolist()))
    return [run[s:s + batch_size] for run in runs for s in range(0, run.numel(), batch_size)]


class SharedImageITM:
    """`itm_score` for rerank_scores: the ITM match logit of (image, text) pairs with each image's cross-attention
    keys/values projected once per call (`qformer.image_kv`) instead of once per pair. A call on one image's
    pairs scores them in one batched pass over that image's keys/values (batch 1, shared: no copies), kept while
    consecutive calls stay on that image; a call on several images projects them together, once each, and gathers
    per-row copies (batch x one image's keys/values in memory). With rerank_scores' pairs sorted by image each
    image is projected about once per batch it appears in (exactly once in all with per_image=True, the
    least memory, but small batches where an image has few candidates). `projections` counts the images
    projected.

    model: a Blip2Stage1 (itm_logits, qformer.image_kv); image_embeds (Ni, N, D_img); input_ids / attention_mask
    (Nt, T) of every text."""

    def __init__(self, model, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.model, self.image_embeds = model, image_embeds
        self.input_ids, self.attention_mask = input_ids, attention_mask
        self.projections = 0
        self._image, self._kv = None, None

    def _project(self, images: torch.Tensor):
        self.projections += images.numel()
        return self.model.qformer.image_kv(self.image_embeds[images.to(self.image_embeds.device)])

    def __call__(self, image_idx: torch.Tensor, text_idx: torch.Tensor) -> torch.Tensor:
        image_idx, text_idx = image_idx.reshape(-1).cpu(), text_idx.reshape(-1).to(self.input_ids.device)
        ids, mask = self.input_ids[text_idx], self.attention_mask[text_idx]
        images, inverse = torch.unique(image_idx, return_inverse=True)
        if images.numel() == 1:
            if int(images) != self._image:
                self._image, self._kv = int(images), self._project(images)
            kv = self._kv  # batch 1, shared by every text
        else:
            kv = gather_image_kv(self._project(images), inverse.to(self.image_embeds.device))
        return self.model.itm_logits(None, ids, mask, image_kv=kv)[:, 1]


def per_pair_itm(model, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """`itm_score` that runs the full multimodal pass per pair (each pair's image projected again), as the public
    code's compute_itm does."""

    def score(image_idx: torch.Tensor, text_idx: torch.Tensor) -> torch.Tensor:
        image_idx, text_idx = image_idx.to(image_embeds.device), text_idx.to(input_ids.device)
        return model.itm_logits(image_embeds[image_idx], input_ids[text_idx], attention_mask[text_idx])[:, 1]

    return score


def retrieval_ranks(score_i2t: torch.Tensor, score_t2i: torch.Tensor, text_to_image: Sequence[int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(i2t rank (Ni,), t2i rank (Nt,)): the 0-based rank of each image's best ground-truth text and of each
    text's image. Ties are resolved against the ground truth. text_to_image[t] = row index of the image
    that text t describes."""
    t2i = torch.as_tensor(list(text_to_image), dtype=torch.long)
    Ni, Nt = score_i2t.shape
    if t2i.numel() != Nt or score_t2i.shape != (Nt, Ni):
        raise ValueError(f"shapes: score_i2t {tuple(score_i2t.shape)}, score_t2i {tuple(score_t2i.shape)}, "
                         f"{t2i.numel()} text labels")
    owned = t2i[None, :] == torch.arange(Ni)[:, None]  # (Ni, Nt)
    # rank of the best ground-truth text of an image = number of OTHER texts scoring at least as high (ties
    # count against the ground truth, so a ground truth outside the top-k never wins a tie with the fill value)
    best_gt = score_i2t.masked_fill(~owned, float("-inf")).max(dim=1).values  # (Ni,)
    i2t_rank = ((score_i2t >= best_gt[:, None]) & ~owned).sum(dim=1)
    gt_score = score_t2i.gather(1, t2i[:, None]).squeeze(1)  # (Nt,)
    t2i_rank = ((score_t2i >= gt_score[:, None]) & ~owned.t()).sum(dim=1)
    return i2t_rank, t2i_rank


def recall_at_k(score_i2t: torch.Tensor, score_t2i: torch.Tensor, text_to_image: Sequence[int],
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K in percent: an image counts as found when ANY of its texts is in its top K (COCO protocol),
    a text when its image is (ranks from `retrieval_ranks`). With re-ranked scores, K above the re-ranking k
    only counts ties as misses."""
    i2t_rank, t2i_rank = retrieval_ranks(score_i2t, score_t2i, text_to_image)
    return recall_from_ranks(i2t_rank, t2i_rank, ks)


def recall_from_ranks(i2t_rank, t2i_rank, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K in percent from 0-based ranks (tensors or lists) of the image and text queries."""
    i2t_rank, t2i_rank = torch.as_tensor(i2t_rank), torch.as_tensor(t2i_rank)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * (i2t_rank < k).double().mean().item()
        out[f"t2i_R@{k}"] = 100.0 * (t2i_rank < k).double().mean().item()
    out["i2t_mean"] = sum(out[f"i2t_R@{k}"] for k in ks) / len(ks)
    out["t2i_mean"] = sum(out[f"t2i_R@{k}"] for k in ks) / len(ks)
    return out


@torch.no_grad()
def similarity_matrix(image_feats: torch.Tensor, text_feats: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """ITC similarity (Ni, Nt) = max over queries, chunked over images. image_feats (Ni, Q, E), text (Nt, E)."""
    rows = [itc_similarity(image_feats[s:s + chunk], text_feats) for s in range(0, image_feats.shape[0], chunk)]
    return torch.cat(rows) if rows else torch.zeros(0, text_feats.shape[0])
