"""Fingerprints that key the per-sample cache: the code a benchmark runs (docs/design.md §9).

`code_fingerprint()` hashes the source of the packages every benchmark runs (`reference/` and `bench/`,
each .py file's path and bytes, sorted), so editing a model, a loop or a metric invalidates every cached
output computed with the old code, instead of serving it under the old numbers. It is deliberately
coarse: a comment edit also invalidates; a cache is cheap to refill, a stale result is not.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGES = ("reference", "bench")


def source_files(packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    """The .py files of the named top-level packages, as imported (sorted by path within each)."""
    import importlib

    files = []
    for name in packages:
        root = Path(importlib.import_module(name).__file__).resolve().parent
        files += sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return files


@functools.lru_cache(maxsize=None)
def code_fingerprint(packages: tuple[str, ...] = PACKAGES) -> str:
    """sha256 (16 hex digits) of the source of `packages`: relative path and bytes of every .py file."""
    digest = hashlib.sha256()
    for path in source_files(packages):
        package_root = next(parent for parent in path.parents if parent.name in packages)
        digest.update(path.relative_to(package_root.parent).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
