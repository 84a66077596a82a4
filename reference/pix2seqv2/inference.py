"""Per-task and all-task inference for a batch of images, one encoder pass per image.

`infer_all` runs detection, then segmentation and keypoints prompted by the detected boxes (each
detection becomes one box prompt), then captioning: the encoder features of an image are shared by
every row that belongs to it. Rows are batched (`batch_rows` at a time) and decoded with the KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from reference.pix2seq.model import Pix2Seq
from reference.pix2seqv2 import captioning, detection, keypoints, segmentation
from reference.pix2seqv2.captioning import WordList
from reference.pix2seqv2.generate import allowed_tokens, generate_from_prompts
from reference.pix2seqv2.prompt import task_prompt


@dataclass
class InferenceOptions:
    batch_rows: int = 64  # decoder rows per generation call
    max_instances: int = 10  # detections per image that prompt segmentation / keypoints
    min_score: float = 0.0  # detections below this score prompt nothing
    constrain: bool = True  # token-kind constraint per task
    num_keypoints: int = 17  # keypoints per instance


def _generate(model: Pix2Seq, features: torch.Tensor, rows: Sequence[int], prompts: list[list[int]], task: str,
              opts: InferenceOptions) -> tuple[np.ndarray, np.ndarray]:
    """Generate for prompts (all of one length) on features[rows]; returns padded (M, L) tokens and probs."""
    vocab = model.vocab
    if not prompts:
        return np.zeros((0, 1), np.int64), np.zeros((0, 1))
    P = len(prompts[0])
    new = vocab.max_len - P
    allowed = allowed_tokens(vocab, task, P + new, opts.num_keypoints) if opts.constrain else None
    out_t, out_p = [], []
    for i in range(0, len(prompts), opts.batch_rows):
        idx = torch.as_tensor(rows[i:i + opts.batch_rows], device=features.device)
        prompt = torch.as_tensor(prompts[i:i + opts.batch_rows], dtype=torch.long, device=features.device)
        t, p = generate_from_prompts(model, features.index_select(0, idx), prompt, new, allowed=allowed)
        out_t.append(t.cpu().numpy())
        out_p.append(p.cpu().numpy())
    width = max(t.shape[1] for t in out_t)
    tokens = np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=vocab.pad) for t in out_t])
    probs = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in out_p])
    return tokens, probs


def detect(model: Pix2Seq, features: torch.Tensor, sizes: Sequence[tuple[float, float]],
           opts: InferenceOptions) -> list[dict[str, np.ndarray]]:
    """features (B,N,d) -> B detections {"boxes" (K,4) xyxy pixels, "labels", "scores"}."""
    vocab = model.vocab
    prompts = [task_prompt(vocab, "detection")] * len(sizes)
    tokens, probs = _generate(model, features, list(range(len(sizes))), prompts, "detection", opts)
    return [detection.decode_detection(vocab, tokens[b], *sizes[b], probs=probs[b]) for b in range(len(sizes))]


def detected_instances(dets: Sequence[dict], opts: InferenceOptions) -> list[tuple[int, np.ndarray, int, float]]:
    """(image row, box, label, score) of the detections that prompt the instance tasks."""
    out = []
    for b, det in enumerate(dets):
        order = np.argsort(-det["scores"], kind="stable")[: opts.max_instances]
        out += [(b, det["boxes"][k], int(det["labels"][k]), float(det["scores"][k]))
                for k in order if det["scores"][k] >= opts.min_score]
    return out


def segment(model: Pix2Seq, features: torch.Tensor, sizes, instances, opts: InferenceOptions) -> list[dict]:
    """instances [(image row, box, label, score)] -> per instance {"polygons", "rle", ...}."""
    vocab = model.vocab
    prompts = [task_prompt(vocab, "segmentation", box, label, *sizes[b]) for b, box, label, _ in instances]
    tokens, _ = _generate(model, features, [i[0] for i in instances], prompts, "segmentation", opts)
    out = []
    for row, (b, box, label, score) in zip(tokens, instances):
        polys = segmentation.decode_segmentation(vocab, row, *sizes[b])["polygons"]
        out.append({"image": b, "box": box, "label": label, "score": score, "polygons": polys,
                    "rle": segmentation.polygons_to_rle(polys, *sizes[b])})
    return out


def keypoint(model: Pix2Seq, features: torch.Tensor, sizes, instances, opts: InferenceOptions) -> list[dict]:
    """instances [(image row, box, label, score)] -> per instance {"keypoints" (K,3), ...}."""
    vocab = model.vocab
    prompts = [task_prompt(vocab, "keypoint", box, label, *sizes[b]) for b, box, label, _ in instances]
    tokens, _ = _generate(model, features, [i[0] for i in instances], prompts, "keypoint", opts)
    return [{"image": b, "box": box, "label": label, "score": score,
             "keypoints": keypoints.decode_keypoints(vocab, row, *sizes[b], opts.num_keypoints)["keypoints"]}
            for row, (b, box, label, score) in zip(tokens, instances)]


def caption(model: Pix2Seq, features: torch.Tensor, words: WordList, opts: InferenceOptions) -> list[str]:
    vocab = model.vocab
    B = features.shape[0]
    tokens, _ = _generate(model, features, list(range(B)), [task_prompt(vocab, "captioning")] * B, "captioning", opts)
    return [captioning.decode_caption(vocab, words, row) for row in tokens]


@torch.no_grad()
def infer_all(model: Pix2Seq, images: torch.Tensor, sizes: Sequence[tuple[float, float]], words: WordList,
              opts: InferenceOptions | None = None, tasks: Sequence[str] = ("detection", "segmentation",
                                                                            "keypoint", "captioning")) -> dict:
    """images (B,3,S,S) prepared, sizes [(w, h)] * B -> {"detection": [B dicts], "segmentation": [...],
    "keypoint": [...], "captioning": [B str]} for the requested tasks (instance tasks need detection)."""
    opts = opts or InferenceOptions()
    if len(sizes) != images.shape[0]:
        raise ValueError(f"sizes has {len(sizes)} entries for {images.shape[0]} images")
    features = model.encode(images)  # (B, N, d), once for every task
    out: dict = {}
    if {"detection", "segmentation", "keypoint"} & set(tasks):
        out["detection"] = detect(model, features, sizes, opts)
        instances = detected_instances(out["detection"], opts)
        if "segmentation" in tasks:
            out["segmentation"] = segment(model, features, sizes, instances, opts)
        if "keypoint" in tasks:
            out["keypoint"] = keypoint(model, features, sizes, instances, opts)
    if "captioning" in tasks:
        out["captioning"] = caption(model, features, words, opts)
    return out
