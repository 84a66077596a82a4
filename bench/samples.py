"""Per-sample results: a cache that makes runs resumable and a JSONL export that makes runs comparable.

Cache key (docs/design.md §9): (benchmark, config hash, checkpoint sha256, dataset fingerprint, code
fingerprint, sample id). The dataset fingerprint hashes the bytes of the files as stored, the code
fingerprint the source of the packages a benchmark runs (reference/ and bench/), so an edited model,
a replaced image or another checkpoint never serves an old output. Entries live in SQLite (WAL
journal, one transaction per batch, so a run killed at any point keeps every finished batch); each
entry carries the sha256 of its JSON text, so a corrupt or truncated entry is detected, dropped and
recomputed; a file that is not a readable SQLite database is a CacheError naming it.
Sampled (non-deterministic) generations are cached only when seeded.

Fault injection: VSBENCH_KILL_AFTER_BATCHES=K SIGKILLs the process after storing its K-th computed
batch; VSBENCH_FAIL_RANK=R makes rank R raise in its first batch (the torchrun failure test).

Export schema (`<reports>/samples/<benchmark>.jsonl`): a first line {"run": RunKey fields, "run_id",
"float_decimals"}, then one line per sample, sorted by id: {"sample_id", "sha256", "output"}. Floats
in exports are rounded to EXPORT_DECIMALS decimals before hashing (float32 results differ in the last
bits from machine to machine); the cache keeps full precision.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from bench import distributed
from bench.fingerprint import code_fingerprint
from bench.progress import Progress
from bench.storage import atomic_write_text, canonical_json, stable_hash

EXPORT_DECIMALS = 4


class CacheError(ValueError):
    """The per-sample cache file cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class RunKey:
    benchmark: str
    config_hash: str
    checkpoint_hash: str
    dataset_fingerprint: str
    code_fingerprint: str = ""

    @property
    def run_id(self) -> str:
        return stable_hash(asdict(self))


def rounded(value: Any, decimals: int = EXPORT_DECIMALS) -> Any:
    """`value` with every float rounded to `decimals` decimals (ints, strings and structure kept)."""
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, dict):
        return {k: rounded(v, decimals) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, decimals) for v in value]
    return value


def output_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SampleStore:
    """SQLite-backed per-sample cache shared by all ranks and runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise CacheError(f"--cache {self.path}: is a folder; name a file (e.g. runs/cache.sqlite)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(f"--cache {self.path}: cannot create its folder ({err})") from err
        with self._connect() as db:
            self._guard(lambda: db.execute("PRAGMA journal_mode=WAL"))
            self._guard(lambda: db.execute("CREATE TABLE IF NOT EXISTS samples (run_id TEXT, sample_id TEXT, "
                                           "output TEXT, sha256 TEXT, PRIMARY KEY (run_id, sample_id))"))
            columns = self._guard(lambda: [r[1] for r in db.execute("PRAGMA table_info(samples)")])
            if columns != ["run_id", "sample_id", "output", "sha256"]:
                raise CacheError(f"--cache {self.path}: a SQLite file, but not a vsbench cache (table 'samples' has "
                                 f"columns {columns}); delete it, point --cache elsewhere or run with --no-cache")

    def _guard(self, fn):
        try:
            return fn()
        except sqlite3.DatabaseError as err:
            raise CacheError(f"--cache {self.path}: not a readable vsbench cache ({err}); delete the file "
                             "(it only holds recomputable per-sample outputs), point --cache elsewhere, or run "
                             "with --no-cache") from err

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=60)
        except sqlite3.Error as err:
            raise CacheError(f"--cache {self.path}: cannot be opened ({err}); point --cache elsewhere or run "
                             "with --no-cache") from err

    def load(self, key: RunKey, sample_ids: Sequence[Hashable]) -> dict[Hashable, Any]:
        """Cached outputs of these samples; corrupt entries are deleted and left out (to be recomputed)."""
        wanted = {canonical_json(i): i for i in sample_ids}
        found, corrupt = {}, []
        with self._connect() as db:
            rows = self._guard(lambda: db.execute("SELECT sample_id, output, sha256 FROM samples WHERE run_id = ?",
                                                  (key.run_id,)).fetchall())
            for sample_key, text, digest in rows:
                if sample_key not in wanted:
                    continue
                try:
                    if output_digest(text) != digest:
                        raise ValueError("hash mismatch")
                    found[wanted[sample_key]] = json.loads(text)
                except (ValueError, TypeError):
                    corrupt.append(sample_key)
            self._guard(lambda: db.executemany("DELETE FROM samples WHERE run_id = ? AND sample_id = ?",
                                               [(key.run_id, s) for s in corrupt]))
        return found

    def save(self, key: RunKey, outputs: dict[Hashable, Any]) -> None:
        rows = []
        for sample_id, output in outputs.items():
            text = canonical_json(output)
            rows.append((key.run_id, canonical_json(sample_id), text, output_digest(text)))
        with self._connect() as db:  # one transaction: the whole batch or nothing
            self._guard(lambda: db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)", rows))


def evaluate_samples(sample_ids: Sequence[Hashable], compute: Callable[[list], dict[Hashable, Any]], *,
                     key: RunKey, store: SampleStore | None = None, batch_size: int = 16,
                     cacheable: bool = True, progress: Callable[[int, int], None] | None = None,
                     counts: dict[str, int] | None = None, sharded: bool = True) -> dict[Hashable, Any] | None:
    """Run `compute(batch_ids) -> {id: output}` over this rank's shard, skipping cached samples, then
    gather everything to rank 0. Returns {id: output} in `sample_ids` order on rank 0, None elsewhere.
    sharded=False: this process alone computes every sample and gets them all (a rank-0-only benchmark).

    Outputs must be JSON-able; a non-cacheable run (unseeded sampling) neither reads nor writes the store.
    `counts`, when given, receives this rank's numbers of cached and computed samples.
    """
    if len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample ids must be unique")
    mine = distributed.shard(sample_ids) if sharded else list(sample_ids)
    use_store = store is not None and cacheable
    local = store.load(key, mine) if use_store else {}
    missing = [i for i in mine if i not in local]
    if counts is not None:
        counts.update(cached=len(local), computed=len(missing))
    kill_after = int(os.environ.get("VSBENCH_KILL_AFTER_BATCHES", "0"))
    fail_rank = os.environ.get("VSBENCH_FAIL_RANK", "")
    bar = Progress(total=len(missing), desc=f"{key.benchmark}: generate", unit="sample", quiet=not missing)
    for number, start in enumerate(range(0, len(missing), batch_size), 1):
        batch = missing[start:start + batch_size]
        if fail_rank and int(fail_rank) == distributed.rank():
            raise RuntimeError(f"injected failure on rank {fail_rank} (VSBENCH_FAIL_RANK)")
        outputs = compute(batch)
        if set(outputs) != set(batch):
            raise ValueError(f"compute returned ids {sorted(outputs, key=str)[:5]}... for batch {batch[:5]}...")
        outputs = json.loads(canonical_json({canonical_json(k): v for k, v in outputs.items()}))
        outputs = {i: outputs[canonical_json(i)] for i in batch}  # JSON-normalised, as a cache hit returns it
        if use_store:
            store.save(key, outputs)
        local.update(outputs)
        bar.update(len(batch))
        if progress:
            progress(len(local), len(mine))
        if kill_after and number >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    parts = distributed.gather_to_main(local) if sharded else [local]
    if parts is None:
        return None
    return distributed.merge_exactly_once(parts, sample_ids)


def export_samples(path: str | Path, key: RunKey, outputs: dict[Hashable, Any]) -> Path:
    """Write the per-sample JSONL export (header line, then one record per sample sorted by id)."""
    lines = [json.dumps({"run": asdict(key), "run_id": key.run_id, "float_decimals": EXPORT_DECIMALS}, sort_keys=True)]
    for sample_id in sorted(outputs, key=canonical_json):
        text = canonical_json(rounded(outputs[sample_id]))
        lines.append(json.dumps({"sample_id": sample_id, "sha256": output_digest(text)[:16],
                                 "output": json.loads(text)}, sort_keys=True))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_samples(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(header, {sample id as JSON text: record}) of an export; malformed lines name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such per-sample export")
    header, records = {}, {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: malformed JSON ({err.msg})") from err
        if number == 1 and "run" in item:
            header = item
        else:
            records[canonical_json(item["sample_id"])] = item
    return header, records


def run_samples(ctx, benchmark: str, sample_ids: Sequence[Hashable], compute: Callable[[list], dict[Hashable, Any]],
                *, config: Any, checkpoint: str | Path, dataset_fingerprint: str, batch_size: int = 16,
                cacheable: bool = True, counts: dict[str, int] | None = None,
                sharded: bool = True) -> dict[Hashable, Any] | None:
    """What a model benchmark calls: per-sample outputs through the run's cache (ctx.store), keyed by
    (benchmark, config hash, checkpoint file hash, dataset fingerprint), sharded over torchrun ranks,
    exported to ctx.samples_path(benchmark) on rank 0. Returns {id: output} on rank 0, None elsewhere."""
    from bench.storage import file_sha256

    key = RunKey(benchmark, stable_hash(config), file_sha256(checkpoint), dataset_fingerprint, code_fingerprint())
    counts = {} if counts is None else counts
    outputs = evaluate_samples(sample_ids, compute, key=key, store=ctx.store, batch_size=batch_size,
                               cacheable=cacheable, counts=counts, sharded=sharded)
    if outputs is not None:
        export_samples(ctx.samples_path(benchmark), key, outputs)
        if hasattr(ctx, "sample_counts"):
            ctx.sample_counts[benchmark] = {"cached": counts.get("cached", 0), "computed": counts.get("computed", 0)}
        print(f"[vsbench] {benchmark}: {counts.get('cached', 0)} samples from the cache, "
              f"{counts.get('computed', 0)} generated", flush=True)
    return outputs
