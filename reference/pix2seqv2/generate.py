"""Prompted generation for Pix2SeqV2: a prefix (task token, box prompt) then KV-cached decoding.

A thin layer over reference/pix2seq: the model's `decoder.decode` with its `KVCache` and
`generate.select_next`. Pix2Seq's `generate` always starts from BOS and constrains tokens for the
detection layout only, hence this loop, which feeds a (B, P) prompt in one cached pass and then one
token per step, and takes a per-task token-kind constraint. The encoder runs outside (features are
passed in), so all tasks of one image share one encoder pass.
"""

from __future__ import annotations

import torch

from reference.pix2seq.generate import allowed_tokens as detection_allowed, decode_loop, generate_scripted
from reference.pix2seq.model import Pix2Seq
from reference.pix2seqv2.vocab import TaskVocabulary


def allowed_tokens(vocab: TaskVocabulary, task: str, length: int, num_keypoints: int = 17) -> torch.Tensor:
    """Token kinds per position of a `task` row of `length` tokens -> bool (length, V).

    detection: Pix2Seq's layout constraint; segmentation: coordinates, separator or EOS after the
    prompt; keypoint: a coordinate or the invisible token for 2K positions, then EOS; captioning:
    words or EOS. The last position allows EOS only (a row always ends). Prompt rows are all False.
    """
    V, start = vocab.size, vocab.prompt_length(task)
    allowed = torch.zeros(length, V, dtype=torch.bool)
    if task == "detection":
        allowed[:, : vocab.base.size] = detection_allowed(vocab.base, length)
        return allowed
    body = slice(start, length)
    if task == "segmentation":
        allowed[body, : vocab.num_bins] = True
        allowed[body, [vocab.separator, vocab.eos]] = True
    elif task == "keypoint":
        end = min(start + 2 * num_keypoints, length - 1)
        allowed[start:end, : vocab.num_bins] = True
        allowed[start:end, vocab.invisible] = True
        allowed[end:, vocab.eos] = True
    else:  # captioning
        allowed[body, vocab.word_start: vocab.size] = True
        allowed[body, vocab.eos] = True
    if length > start:
        allowed[-1] = False
        allowed[-1, vocab.eos] = True
    return allowed


@torch.no_grad()
def generate_from_prompts(model: Pix2Seq, features: torch.Tensor, prompts: torch.Tensor, max_new_tokens: int,
                          *, allowed: torch.Tensor | None = None, strategy: str = "greedy", top_k: int = 0,
                          top_p: float = 1.0, temperature: float = 1.0, stop_at_eos: bool = True,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """features (B,N,d) from model.encode, prompts (B,P) long -> (tokens (B,P+T), probs (B,P+T)).

    allowed: bool (P+max_new_tokens, V) token-kind constraint per position (see `allowed_tokens`).
    After a row's EOS it holds PAD with probability 0; the loop ends when every row has ended.
    """
    vocab = model.vocab
    B, P = prompts.shape
    if features.shape[0] != B:
        raise ValueError(f"features has {features.shape[0]} rows for {B} prompts")
    if P < 1 or not 1 <= max_new_tokens <= vocab.max_len - P:
        raise ValueError(f"prompt length {P} + max_new_tokens {max_new_tokens} must fit max_len={vocab.max_len}")
    if allowed is not None and allowed.shape[0] < P + max_new_tokens:
        raise ValueError(f"allowed has {allowed.shape[0]} positions, need {P + max_new_tokens}")
    device = features.device
    decoder = model.decoder
    memory_kv = decoder.cross_kv(decoder.memory(features))  # per layer (k, v), once
    cache = model.new_cache(B, P + max_new_tokens - 1)
    tokens = torch.full((B, P + max_new_tokens), vocab.pad, dtype=torch.long, device=device)
    probs = torch.zeros(B, P + max_new_tokens, device=device)
    tokens[:, :P], probs[:, :P] = prompts.to(device), 1.0
    if allowed is not None:
        allowed = allowed.to(device)

    def next_logits(pos: int) -> torch.Tensor:  # (B, V) for position pos
        if pos == P:  # the whole prompt in one cached pass
            return decoder.decode(tokens[:, :P], 0, memory_kv, cache)[:, -1]
        return decoder.decode(tokens[:, pos - 1:pos], pos - 1, memory_kv, cache)[:, -1]

    end = decode_loop(next_logits, tokens, probs, P, eos=vocab.eos, pad=vocab.pad, allowed=allowed,
                      stop_at_eos=stop_at_eos, strategy=strategy, top_k=top_k, top_p=top_p,
                      temperature=temperature, generator=generator)
    return tokens[:, :end], probs[:, :end]


def generate_task(vocab: TaskVocabulary, predict, images, task: str, prompts, max_new_tokens: int | None = None,
                  num_keypoints: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy, per-task constrained generation from `predict(images, prefix (B, t)) -> logits (B, V)`.

    prompts (B, P) long, every row starting with `task`'s token -> (tokens (B, P+T), probs (B, P+T)),
    T <= max_new_tokens (default: up to max_len). The stand-in's V may exceed vocab.size: ids from
    word_start on are caption words. The same loop and constraint as `generate_from_prompts`.
    """
    prompts = torch.as_tensor(prompts)
    if prompts.ndim != 2 or prompts.is_floating_point() or prompts.shape[1] != vocab.prompt_length(task):
        raise ValueError(f"prompts must be (B, {vocab.prompt_length(task)}) integer token ids for the {task} task, "
                         f"got {prompts.dtype} {tuple(prompts.shape)}")
    if bool((prompts[:, 0] != vocab.task_token(task)).any()):
        raise ValueError(f"every prompt must start with the {task} token {vocab.task_token(task)}, "
                         f"got {sorted(set(prompts[:, 0].tolist()))}")
    P = prompts.shape[1]
    new = vocab.max_len - P if max_new_tokens is None else int(max_new_tokens)
    if not 1 <= new <= vocab.max_len - P:
        raise ValueError(f"max_new_tokens={new}: must be in [1, {vocab.max_len - P}] (max_len - prompt length)")
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints={num_keypoints} must be >= 1")

    def allowed(width: int) -> torch.Tensor:
        wide = vocab.with_words(max(vocab.num_words, width - vocab.word_start))
        return allowed_tokens(wide, task, P + new, num_keypoints)

    return generate_scripted(predict, images, prompts.long(), new, eos=vocab.eos, pad=vocab.pad, allowed=allowed)
