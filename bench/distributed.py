"""torch.distributed for evaluation: exact sharding (no padding duplicates), gathering per-sample
outputs to rank 0, and the assertion that every sample was evaluated exactly once.

`torchrun --nproc_per_node N -m bench run ...` sets WORLD_SIZE / RANK; `init_from_env` then opens a
process group (gloo on CPU, nccl on CUDA). Without torchrun everything is a world of one.

Bounded waits (docs/design.md §9): no rank enters a collective before every rank has said, through
the process group's key-value store, that it got there (`sync`). A rank that fails posts its error
(`post_abort`) and exits; every rank waiting in `sync` sees it within a fraction of a second and
raises `RankFailed` naming the failing rank and its error, so all ranks exit non-zero within
seconds instead of waiting for the backend's 30-minute timeout. A rank that never arrives makes the
others raise TimeoutError after VSBENCH_DIST_TIMEOUT seconds (default 3600), which is also the
process group's own collective timeout.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import Counter
from typing import Any, Hashable, Sequence

import torch
import torch.distributed as dist

ABORT_KEY = "vsbench/abort"
_sync_counter = 0


class RankFailed(RuntimeError):
    """Another rank failed; the message names it and its error."""


def timeout_seconds() -> float:
    raw = os.environ.get("VSBENCH_DIST_TIMEOUT", "3600")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"VSBENCH_DIST_TIMEOUT={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"VSBENCH_DIST_TIMEOUT={raw!r}: must be > 0")
    return value


def init_from_env(device: torch.device | None = None) -> bool:
    """Open the default process group when launched by torchrun; True when distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    return True


def _store():
    return dist.distributed_c10d._get_default_store()


def post_abort(message: str) -> None:
    """Tell every other rank that this rank failed (first message wins); no-op in a world of one."""
    if world_size() > 1:
        try:
            _store().compare_set(ABORT_KEY, "", f"rank {rank()}: {message}"[:2000])
        except Exception:  # the store may already be gone when the group is torn down
            pass


def sync(tag: str, poll_s: float = 0.1) -> None:
    """Wait until every rank has reached this point (the n-th call on every rank meets the n-th call
    of the others). Raises RankFailed as soon as any rank posted an abort, TimeoutError naming the
    ranks that did not arrive within VSBENCH_DIST_TIMEOUT seconds."""
    global _sync_counter
    if world_size() == 1:
        return
    _sync_counter += 1
    store, me, world = _store(), rank(), world_size()
    prefix = f"vsbench/sync/{_sync_counter}"
    store.set(f"{prefix}/{me}", tag)
    pending = set(range(world)) - {me}
    deadline = time.monotonic() + timeout_seconds()
    while True:
        if store.check([ABORT_KEY]):
            message = store.get(ABORT_KEY).decode("utf-8", "replace")
            if message:
                raise RankFailed(f"rank {me} stops at {tag!r}: {message}")
        for other in sorted(pending):
            key = f"{prefix}/{other}"
            if store.check([key]):
                seen = store.get(key).decode("utf-8", "replace")
                if seen != tag:
                    raise RankFailed(f"ranks disagree: rank {me} is at {tag!r}, rank {other} at {seen!r}")
                pending.discard(other)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {me}: ranks {sorted(pending)} did not reach {tag!r} within "
                               f"{timeout_seconds():g} s (VSBENCH_DIST_TIMEOUT)")
        time.sleep(poll_s)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier(tag: str = "barrier") -> None:
    """Every rank reaches this point (bounded, failure-aware: see `sync`)."""
    sync(tag)


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
    sync("gather")
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
