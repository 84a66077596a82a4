"""Per-sample cache, resume, exact sharding, exactly-once gathering (gloo, several processes), diff."""

import json
import os
import sqlite3
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, strategies as st

from bench import distributed
from bench.diff import diff_runs, format_diff
from bench.samples import RunKey, SampleStore, evaluate_samples, export_samples, read_samples

KEY = RunKey("toy", "cfg", "ckpt", "data")


def square(batch):
    return {i: {"value": i * i, "tokens": [i, i + 1]} for i in batch}


@given(n=st.integers(0, 40), world=st.integers(1, 6))
def test_shards_cover_every_sample_exactly_once(n, world):
    ids = list(range(n))
    shards = [distributed.shard(ids, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == ids
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_merge_detects_duplicates_and_missing():
    with pytest.raises(AssertionError, match=r"duplicated \[1\]"):
        distributed.merge_exactly_once([{1: "a"}, {1: "a", 2: "b"}], [1, 2])
    with pytest.raises(AssertionError, match=r"missing \[3\]"):
        distributed.merge_exactly_once([{1: "a"}, {2: "b"}], [1, 2, 3])


def test_store_round_trip_and_corruption_is_recomputed(tmp_path):
    store = SampleStore(tmp_path / "c.sqlite")
    calls = []

    def compute(batch):
        calls.extend(batch)
        return square(batch)

    first = evaluate_samples(list(range(10)), compute, key=KEY, store=store, batch_size=3)
    assert calls == list(range(10))
    with sqlite3.connect(tmp_path / "c.sqlite") as db:  # corrupt one entry, truncate another
        db.execute("UPDATE samples SET output = '{\"value\": 999}' WHERE sample_id = '4'")
        db.execute("UPDATE samples SET output = '{\"val' WHERE sample_id = '7'")
    calls.clear()
    second = evaluate_samples(list(range(10)), compute, key=KEY, store=store, batch_size=3)
    assert calls == [4, 7] and second == first


def test_killed_run_resumes_with_only_the_missing_samples(tmp_path):
    store = SampleStore(tmp_path / "c.sqlite")
    calls = []

    def dies_after_two_batches(batch):
        if len(calls) >= 8:
            raise KeyboardInterrupt("killed")
        calls.extend(batch)
        return square(batch)

    with pytest.raises(KeyboardInterrupt):
        evaluate_samples(list(range(20)), dies_after_two_batches, key=KEY, store=store, batch_size=4)
    done = list(calls)
    calls.clear()
    resumed = evaluate_samples(list(range(20)), square_recording(calls), key=KEY, store=store, batch_size=4)
    assert sorted(calls) == sorted(set(range(20)) - set(done))
    assert resumed == evaluate_samples(list(range(20)), square, key=KEY, store=None)


def square_recording(calls):
    def compute(batch):
        calls.extend(batch)
        return square(batch)
    return compute


def test_unseeded_sampling_is_never_served_from_the_cache(tmp_path):
    store = SampleStore(tmp_path / "c.sqlite")
    evaluate_samples([1, 2], square, key=KEY, store=store)
    calls = []
    evaluate_samples([1, 2], square_recording(calls), key=KEY, store=store, cacheable=False)
    assert calls == [1, 2]


def test_other_config_is_another_cache_entry(tmp_path):
    store = SampleStore(tmp_path / "c.sqlite")
    evaluate_samples([1, 2], square, key=KEY, store=store)
    calls = []
    evaluate_samples([1, 2], square_recording(calls), key=RunKey("toy", "cfg2", "ckpt", "data"), store=store)
    assert calls == [1, 2]


def _worker(rank, world, init_file, n, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = evaluate_samples(list(range(n)), square, key=KEY, store=None, batch_size=2)
        if rank == 0:
            with open(out_file, "w") as handle:
                json.dump({str(k): v for k, v in result.items()}, handle)
        else:
            assert result is None
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world, n", [(2, 7), (3, 10), (3, 2)])  # 3 ranks, 2 samples: one rank gets none
def test_gloo_gather_equals_single_process(tmp_path, world, n):
    init_file, out_file = tmp_path / "init", tmp_path / "out.json"
    mp.start_processes(_worker, args=(world, str(init_file), n, str(out_file)), nprocs=world, start_method="spawn")
    single = evaluate_samples(list(range(n)), square, key=KEY)
    assert json.loads(out_file.read_text()) == {str(k): v for k, v in single.items()}


def test_diff_reports_changed_and_missing_samples(tmp_path):
    a = export_samples(tmp_path / "a" / "samples" / "toy.jsonl", KEY, {1: {"v": 1}, 2: {"v": 2}, 3: {"v": 3}})
    b = export_samples(tmp_path / "b" / "samples" / "toy.jsonl", KEY, {1: {"v": 1}, 2: {"v": 5}, 4: {"v": 4}})
    for folder, ap in (("a", 0.5), ("b", 0.75)):
        (tmp_path / folder / "results").mkdir()
        (tmp_path / folder / "results" / "toy.json").write_text(json.dumps({"metrics": {"AP": ap, "n": 3}}))
    diff = diff_runs(tmp_path / "a", tmp_path / "b", "toy")
    assert diff["changed"] == [2] and diff["only_in_a"] == [3] and diff["only_in_b"] == [4]
    assert diff["metric_deltas"] == {"AP": (0.5, 0.75, 0.25)}
    assert "1 changed" in format_diff(diff)
    header, records = read_samples(a)
    assert header["run"]["benchmark"] == "toy" and len(records) == 3
    # an export named <benchmark>-<part> is compared with its benchmark's results
    for folder in ("a", "b"):
        (tmp_path / folder / "samples" / "toy.jsonl").rename(tmp_path / folder / "samples" / "toy-part.jsonl")
    assert diff_runs(tmp_path / "a", tmp_path / "b", "toy-part")["metric_deltas"] == {"AP": (0.5, 0.75, 0.25)}
    assert diff_runs(tmp_path / "a" / "samples" / "toy-part.jsonl",
                     tmp_path / "b" / "samples" / "toy-part.jsonl")["metric_deltas"] == {"AP": (0.5, 0.75, 0.25)}


def test_read_samples_names_the_bad_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"run": {}}\n{"sample_id": 1,\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: malformed JSON"):
        read_samples(path)


def test_model_benchmarks_export_per_sample_outputs_that_recompute_their_metrics(tmp_path, capsys):
    """multitask (5 checkpoints) goes through the cache: a second run computes nothing and scores the same;
    retrieval's exported per-query ranks give back its Recall@K without the model."""
    from bench import cli
    from reference.blip2.retrieval import recall_from_ranks

    args = ["run", "multitask", "retrieval", "--limit", "6", "--device", "cpu", "--out", str(tmp_path),
            "--cache", str(tmp_path / "cache.sqlite")]
    assert cli.main(args) == 0
    first = json.loads((tmp_path / "results" / "multitask.json").read_text())["metrics"]
    exports = sorted(p.name for p in (tmp_path / "samples").glob("multitask-*.jsonl"))
    assert len(exports) == 5
    header, records = read_samples(tmp_path / "samples" / exports[0])
    assert len(records) == 6 and header["run"]["benchmark"] == exports[0][:-6]
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 5 * 6
    capsys.readouterr()
    assert cli.main(args[:2] + args[3:]) == 0
    assert capsys.readouterr().out.count("6 samples from the cache, 0 generated") == 5
    assert json.loads((tmp_path / "results" / "multitask.json").read_text())["metrics"] == first

    metrics = json.loads((tmp_path / "results" / "retrieval.json").read_text())["metrics"]
    _, records = read_samples(tmp_path / "samples" / "retrieval.jsonl")
    variants = [k for k, v in metrics.items() if isinstance(v, dict) and "i2t_R@1" in v]
    assert len(variants) == 3 and len(records) == 6 + 30
    for name in variants:
        i2t = [r["output"][name] for k, r in records.items() if "image:" in k]
        t2i = [r["output"]["ranks"][name] for k, r in records.items() if "text:" in k]
        assert recall_from_ranks(i2t, t2i) == metrics[name]
