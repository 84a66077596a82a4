"""A scripted stand-in model for the `generate` parts: the case sets every step's distribution.

    model = ScriptedModel(vocab_size, plans, prompt_length)
    tokens, probs = api.generate(model, model.images(keys), ...)

`plans[key]` is one row's script: a list of steps, each a dict {token: probability} (the distribution
of that position; ids not listed have probability 0). Row b of a batch follows plans[images[b]]; step
i is the distribution after prompt_length + i tokens, whatever the tokens so far were (so a generate
that picks another token than the script's favourite is still scripted afterwards). Past its plan a
row's distribution is `after` (default: EOS with probability 1). The logits are log-probabilities;
ids not listed share a mass of 1e-9 (so that a kind constraint never masks every id), so softmax gives
back the scripted numbers to within 1e-9.
"""

from __future__ import annotations

import math

import torch

FLOOR = 1e-9  # probability mass shared by the ids a step does not list


class ScriptedModel:
    """predict(images, prefix (B, t) long) -> logits (B, V): the stand-in of cases/interface/pix2seq.py."""

    def __init__(self, vocab_size: int, plans: dict[int, list[dict[int, float]]], prompt_length: int = 1,
                 after: dict[int, float] | None = None, eos: int | None = None) -> None:
        if after is None and eos is None:
            raise ValueError("give `after` (the distribution past a plan) or `eos`")
        self.vocab_size = vocab_size
        self.plans = plans
        self.prompt_length = prompt_length
        self.after = after if after is not None else {eos: 1.0}
        self.calls = 0
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def images(self, keys) -> torch.Tensor:
        """The `images` argument of generate: a LongTensor (B,) of plan keys."""
        return torch.as_tensor(list(keys), dtype=torch.long)

    def distribution(self, key: int, step: int) -> dict[int, float]:
        plan = self.plans[int(key)]
        return plan[step] if 0 <= step < len(plan) else self.after

    def __call__(self, images, prefix: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        prefix = torch.as_tensor(prefix)
        if len(images) != prefix.shape[0]:
            raise AssertionError(f"generate passed {len(images)} images for a prefix of {prefix.shape[0]} rows")
        step = prefix.shape[1] - self.prompt_length
        keys = torch.as_tensor(images).reshape(-1).tolist()
        return torch.stack([self._logits(key, step) for key in keys])

    def _logits(self, key: int, step: int) -> torch.Tensor:
        plan = self.plans[int(key)]
        cache_key = (int(key), step if 0 <= step < len(plan) else -1)
        if cache_key not in self._cache:
            row = torch.full((self.vocab_size,), math.log(FLOOR / self.vocab_size), dtype=torch.float64)
            for token, p in self.distribution(key, step).items():
                row[token] = math.log(p * (1 - FLOOR)) if p > 0 else -math.inf
            self._cache[cache_key] = row
        return self._cache[cache_key]


def spread(token: int, p: float, others) -> dict[int, float]:
    """{token: p} and the rest of the mass shared evenly by `others` (each below p when p > 1/2 or when
    there are enough of them)."""
    others = [t for t in others if t != token]
    rest = (1.0 - p) / len(others) if others else 0.0
    return {token: p, **{t: rest for t in others}} if others else {token: 1.0}


def plan_of(tokens, probs, alternatives) -> list[dict[int, float]]:
    """A plan emitting `tokens` in order, token i with probability probs[i], the rest of each step's mass
    on alternatives(i) (tokens of the same kind, so that a kind constraint changes nothing)."""
    return [spread(int(t), float(p), alternatives(i)) for i, (t, p) in enumerate(zip(tokens, probs))]
