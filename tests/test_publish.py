"""A run's outputs are published together or not at all; a failed run never replaces a good one
(bench/publish.py, bench/cli.py)."""

import json
import subprocess
import sys

import pytest

from bench import cli
from bench.publish import MARKER, STAGING, Staging, recover, verify_artifacts
from bench.registry import register_benchmark, unregister_benchmark
from bench.results import BenchmarkResult, Section, Table, load_results

BEHAVIOUR = {"mode": "ok", "value": 1.0}


def _toy(ctx):
    """A benchmark whose behaviour the test sets: ok, raise, check-fails, optional-stage, required-stage."""
    mode = BEHAVIOUR["mode"]
    (ctx.figures_dir / "toy.png").write_bytes(b"png " + str(BEHAVIOUR["value"]).encode())
    ctx.samples_path("toy-pub").parent.mkdir(parents=True, exist_ok=True)
    ctx.samples_path("toy-pub").write_text(json.dumps({"value": BEHAVIOUR["value"]}) + "\n")
    if mode == "raise":
        raise RuntimeError("the model file has a typo")
    if mode in ("optional-stage", "required-stage"):
        ctx.run_stage("replica", lambda: {}["image_id"], required=mode == "required-stage")
    return BenchmarkResult(benchmark="toy-pub", report="toypub", title="Toy", metrics={"value": BEHAVIOUR["value"]},
                           config={}, seeds={}, ok=mode != "check-fails", problems=["value too low"] * (mode == "check-fails"),
                           sections=[Section("S", tables=[Table(["v"], [[BEHAVIOUR["value"]]])])])


@pytest.fixture
def toy():
    register_benchmark("toy-pub", description="publication test", report="toypub")(_toy)
    BEHAVIOUR.update(mode="ok", value=1.0)
    yield
    unregister_benchmark("toy-pub")


def run(out, capsys=None):
    code = cli.main(["run", "toy-pub", "--out", str(out), "--no-cache", "--device", "cpu"])
    return code


def published(out):
    return json.loads((out / "results" / "toy-pub.json").read_text())


def test_a_good_run_publishes_results_samples_figures_and_report_together(toy, tmp_path):
    assert run(tmp_path) == 0
    data = published(tmp_path)
    assert set(data["artifacts"]) == {"figures/toy.png", "samples/toy-pub.jsonl"}
    assert verify_artifacts(tmp_path, data["artifacts"]) == []
    assert (tmp_path / "toypub.md").is_file() and (tmp_path / "README.md").is_file()
    assert not any((tmp_path / STAGING).iterdir())  # nothing left behind


@pytest.mark.parametrize("mode", ["raise", "check-fails", "required-stage"])
def test_a_failed_run_is_kept_beside_and_never_replaces_the_good_one(toy, tmp_path, mode):
    assert run(tmp_path) == 0
    good = {p: (tmp_path / p).read_bytes() for p in ("results/toy-pub.json", "samples/toy-pub.jsonl",
                                                     "figures/toy.png", "toypub.md")}
    BEHAVIOUR.update(mode=mode, value=2.0)
    assert run(tmp_path) == 1
    assert {p: (tmp_path / p).read_bytes() for p in good} == good  # untouched
    failed = tmp_path / "failed" / "toy-pub"
    result = json.loads((failed / "results.json").read_text())
    assert result["ok"] is False and result["problems"]
    assert (failed / "samples" / "toy-pub.jsonl").read_text() == '{"value": 2.0}\n'  # its work is kept too
    assert (failed / "report.md").is_file()
    if mode == "raise":
        assert "the model file has a typo" in (failed / "error.txt").read_text()
    assert "failed/toy-pub/report.md" in (tmp_path / "README.md").read_text()


def test_an_optional_stage_that_raises_is_reported_and_the_rest_published(toy, tmp_path):
    BEHAVIOUR.update(mode="optional-stage")
    assert run(tmp_path) == 0
    report = (tmp_path / "toypub.md").read_text()
    assert "Stages that raised" in report and "KeyError: 'image_id'" in report
    assert published(tmp_path)["metrics"] == {"value": 1.0}


def test_publication_interrupted_after_the_marker_is_rolled_forward(tmp_path):
    staging = Staging(tmp_path, "b")
    for rel in ("results/b.json", "samples/b.jsonl", "b.md"):
        (staging.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging.folder / rel).write_text(rel)
    (staging.folder / MARKER).write_text("results/b.json\nsamples/b.jsonl\nb.md\n")
    (staging.folder / "b.md").rename(tmp_path / "b.md")  # the kill happened after the first rename
    done = recover(tmp_path, log=lambda m: None)
    assert len(done) == 1 and "completed" in done[0]
    assert all((tmp_path / rel).read_text() == rel for rel in ("results/b.json", "samples/b.jsonl", "b.md"))
    assert not staging.folder.exists()


def test_a_run_killed_before_publishing_leaves_nothing_visible(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    folder = tmp_path / STAGING / f"b.{proc.pid}.deadbeef"
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "b.jsonl").write_text("half")
    (tmp_path / ".b.md.abc.tmp").write_text("half-written")
    live = Staging(tmp_path, "c")  # this process's own run in progress is left alone
    done = recover(tmp_path, log=lambda m: None)
    assert not folder.exists() and not (tmp_path / "samples").exists() and live.folder.exists()
    assert not (tmp_path / ".b.md.abc.tmp").exists() and len(done) == 2


def test_an_export_modified_after_its_run_is_named_in_the_report(toy, tmp_path):
    assert run(tmp_path) == 0
    (tmp_path / "samples" / "toy-pub.jsonl").write_text('{"value": 99}\n')
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    assert "WARNING: samples/toy-pub.jsonl was modified after this run" in (tmp_path / "toypub.md").read_text()


@pytest.mark.parametrize("content, needle", [("{not json", "malformed JSON"),
                                             ('{"benchmark": "x", "surprise": 1}', "unknown fields ['surprise']")])
def test_an_unreadable_results_file_is_left_out_with_its_name_and_the_run_goes_on(toy, tmp_path, capsys, content, needle):
    (tmp_path / "results").mkdir()
    bad = tmp_path / "results" / "other.json"
    bad.write_text(content)
    assert run(tmp_path) == 0
    err = capsys.readouterr().err
    assert str(bad) in err and needle in err
    assert (tmp_path / "toypub.md").is_file()
    assert "other.json" in (tmp_path / "README.md").read_text()
    assert [r.benchmark for r in load_results(tmp_path)] == ["toy-pub"]


def test_rendering_now_equals_rendering_later_from_the_file(toy, tmp_path):
    assert run(tmp_path) == 0
    before = (tmp_path / "toypub.md").read_text()
    assert cli.main(["report", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "toypub.md").read_text() == before
