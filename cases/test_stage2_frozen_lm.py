"""BLIP-2 stage 2 freezes the LM: it receives no gradient, and after optimiser steps (AdamW with weight
decay) its weights are bit-identical, while the Q-Former and the projection learn. Re-implementations that
only wrap the LM call in no_grad cut the gradient to the prompts too; those that leave the LM in the
optimiser see its weights decay even without a gradient of their own making (zeroed, not None, grads)."""

import hashlib

import pytest
import torch

from cases.interface.blip2_stage2 import TINY_CONFIG, random_batch

pytestmark = [getattr(pytest.mark, "blip2-stage2"),
              pytest.mark.case(stands_for="the frozen LM gets no gradient and stays bit-identical in stage 2",
                               stage="stage-2 optimisation")]


def digest(module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fresh(api, seed=0):
    torch.manual_seed(seed)
    return api.build(TINY_CONFIG)


def check_no_lm_gradient(api) -> None:
    model = fresh(api)
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=2)
    api.loss(model, images, ids, mask).backward()
    lm = api.language_model(model)
    lm_ids = {id(p) for p in lm.parameters()}
    with_grad = [n for n, p in lm.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert not with_grad, f"frozen LM parameters received gradients: {with_grad[:5]}"
    learning = [p for p in model.parameters() if id(p) not in lm_ids and p.grad is not None and p.grad.abs().sum() > 0]
    assert learning, "no Q-Former / projection parameter received a gradient: the prompts do not learn"


def check_lm_bit_identical_after_steps(api, steps: int = 3) -> None:
    model = fresh(api)
    lm = api.language_model(model)
    lm_ids = {id(p) for p in lm.parameters()}
    before_lm = digest(lm)
    before_rest = [p.detach().clone() for p in model.parameters() if id(p) not in lm_ids]
    opt = api.optimizer(model, 1e-2, 0.05)
    if hasattr(model, "train"):
        model.train()
    for s in range(steps):
        images, ids, mask = random_batch(TINY_CONFIG, 4, 8, seed=10 + s)
        opt.zero_grad()
        api.loss(model, images, ids, mask).backward()
        opt.step()
    assert digest(lm) == before_lm, "the frozen LM's weights changed during stage-2 optimisation"
    after_rest = [p.detach() for p in model.parameters() if id(p) not in lm_ids]
    assert any(not torch.equal(a, b) for a, b in zip(before_rest, after_rest)), "nothing else was trained"


def test_frozen_lm_gets_no_gradient(api):
    check_no_lm_gradient(api)


def test_frozen_lm_is_bit_identical_after_optimiser_steps(api):
    check_lm_bit_identical_after_steps(api)
