"""FLOP counts of real calls (torch.utils.flop_counter.FlopCounterMode), per module, for the reports' bounds.

torch's counter knows the CUDA fused-attention kernels but not the CPU one that F.scaled_dot_product_attention
dispatches to (`_scaled_dot_product_flash_attention_for_cpu` and its backward); they are counted here with
torch's own attention formulas, so the totals hold the attention matmuls on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop, sdpa_flop

_aten = torch.ops.aten


def _raw(formula):
    """torch's registered formulas already take tensors (their shape wrapper is applied): mark them raw."""
    def count(*args, out_val=None, **kwargs):
        return formula(*args, out_val=out_val, **kwargs)
    count._get_raw = True
    return count


CPU_ATTENTION = {_aten._scaled_dot_product_flash_attention_for_cpu: _raw(sdpa_flop),
                 _aten._scaled_dot_product_flash_attention_for_cpu_backward: _raw(sdpa_backward_flop)}


@dataclass
class FlopCount:
    total: int  # every counted FLOP of the call (a multiply-add is 2)
    by_module: dict[str, int]  # module path (as FlopCounterMode names it: "Class.sub.sub") -> FLOPs inside it
    result: Any = None  # the call's return value

    def share(self, suffixes: tuple[str, ...]) -> int:
        """FLOPs inside the modules whose path ends with one of `suffixes` (leaves: no double counting)."""
        return sum(v for name, v in self.by_module.items() if name.endswith(suffixes))


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Run fn() once under a FLOP counter; returns the total, the per-module FLOPs and fn's result."""
    with FlopCounterMode(display=False, depth=None, custom_mapping=CPU_ATTENTION) as counter:
        result = fn()
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    return FlopCount(counter.get_total_flops(), by_module, result)
