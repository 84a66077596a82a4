"""torch.distributed for evaluation: exact sharding (no padding duplicates), gathering per-sample
outputs to rank 0, and the assertion that every sample was evaluated exactly once.

`torchrun --nproc_per_node N -m bench run ...` sets WORLD_SIZE / RANK; `init_from_env` then opens a
process group (gloo on CPU, nccl on CUDA). Without torchrun everything is a world of one.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Hashable, Sequence

import torch
import torch.distributed as dist


def init_from_env(device: torch.device | None = None) -> bool:
    """Open the default process group when launched by torchrun; True when distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(sample_ids: Sequence[Hashable], rank_: int | None = None, world: int | None = None) -> list:
    """This rank's samples: ids[rank::world]. Every id lands on exactly one rank, nothing is padded;
    a rank may get none when there are fewer samples than ranks."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if not 0 <= rank_ < world:
        raise ValueError(f"rank {rank_} outside world of size {world}")
    return list(sample_ids[rank_::world])


def gather_to_main(local: dict[Hashable, Any]) -> list[dict[Hashable, Any]] | None:
    """Every rank's {sample_id: output} on rank 0 (a list, one dict per rank); None on the other ranks."""
    if world_size() == 1:
        return [local]
    parts = [None] * world_size() if is_main() else None
    dist.gather_object(local, parts, dst=0)
    return parts


def merge_exactly_once(parts: list[dict[Hashable, Any]], expected_ids: Sequence[Hashable]) -> dict[Hashable, Any]:
    """Merge per-rank outputs, asserting each expected sample appears exactly once and nothing else does."""
    seen = Counter(i for part in parts for i in part)
    duplicated = sorted((i for i, n in seen.items() if n > 1), key=str)
    missing = sorted(set(expected_ids) - set(seen), key=str)
    extra = sorted(set(seen) - set(expected_ids), key=str)
    if duplicated or missing or extra:
        raise AssertionError(f"each sample must be evaluated exactly once: duplicated {duplicated[:10]}, "
                             f"missing {missing[:10]}, unexpected {extra[:10]}")
    merged = {}
    for part in parts:
        merged.update(part)
    return {i: merged[i] for i in expected_ids}
