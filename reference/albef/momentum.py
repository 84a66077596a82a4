"""Momentum encoders (ALBEF, after MoCo): an exponential moving average of the online encoders.

The momentum copy starts as an exact copy of the online modules, never receives a gradient (requires_grad False)
and after each optimizer step moves towards the online weights:

    p_m <- m * p_m + (1 - m) * p        (m = 0.995 by default; m = 1 freezes it, m = 0 copies)

The parameters are matched by NAME, and any difference in names or shapes between the two modules is an error:
the public code zips `parameters()` of the two models, which silently leaves the unmatched tail un-updated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MomentumConfig:
    momentum: float = 0.995  # EMA coefficient m

    def __post_init__(self) -> None:
        check_momentum(self.momentum)


def check_momentum(m: float) -> float:
    if not 0.0 <= float(m) <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {m}")
    return float(m)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` (same values, new parameter objects, ties inside it kept) that takes no gradient."""
    copied = copy.deepcopy(module)
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


def matched_parameters(online: nn.Module, momentum: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(online params, momentum params) paired by name; a ValueError names any missing or mis-shaped parameter."""
    a, b = dict(online.named_parameters()), dict(momentum.named_parameters())
    if a.keys() != b.keys():
        only_online, only_momentum = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"online and momentum modules differ: only online {only_online[:5]}, only momentum "
                         f"{only_momentum[:5]}")
    names = list(a)
    for name in names:
        if a[name].shape != b[name].shape:
            raise ValueError(f"parameter {name!r}: online shape {tuple(a[name].shape)} but momentum "
                             f"{tuple(b[name].shape)}")
    return [a[n] for n in names], [b[n] for n in names]


@torch.no_grad()
def ema_update_(online: nn.Module, momentum: nn.Module, m: float) -> None:
    """In place, without autograd: every momentum parameter p_m <- m * p_m + (1 - m) * p. Online weights unchanged."""
    m = check_momentum(m)
    params, params_m = matched_parameters(online, momentum)
    for p, p_m in zip(params, params_m):
        p_m.copy_(p_m * m + p.detach().to(p_m.dtype) * (1.0 - m))
