"""The harness core: registry, results schema, shared report writer, atomic writes, CLI."""

import json
import math
import os
from pathlib import Path

import pytest

from bench import cli
from bench.plugins import ImplementationError, load_object
from bench.registry import all_benchmarks, get_benchmark, register_benchmark, unregister_benchmark
from bench.report import format_cell, render_table, write_reports
from bench.results import BenchmarkResult, Section, Table, load_results, save_result
from bench.storage import atomic_write_text, read_json, stable_hash


@pytest.fixture
def toy_benchmark():
    @register_benchmark("toy-test", description="toy", report="toy", order=0, report_title="Toy report")
    def run(ctx):
        return BenchmarkResult(
            benchmark="toy-test", report="toy", title="Toy", metrics={"x": 1.5, "undefined": float("nan")},
            config={"a": 1}, seeds={"seed": ctx.seed},
            sections=[Section("Numbers", text="hello", tables=[Table(["name", "value"], [["a", 0.5], ["b", None]])])])

    yield "toy-test"
    unregister_benchmark("toy-test")


def test_registering_a_name_twice_is_an_error(toy_benchmark):
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark(toy_benchmark, description="again")(lambda ctx: None)


def test_unknown_benchmark_lists_valid_names(toy_benchmark):
    with pytest.raises(KeyError, match="valid names: .*toy-test"):
        get_benchmark("nope")


def test_cases_benchmark_is_registered():
    assert "cases" in {b.name for b in all_benchmarks()}


def test_format_cell_na_and_floats():
    assert [format_cell(v) for v in (None, float("nan"), 0.12345, True, 3)] == ["n/a", "n/a", "0.1235", "yes", "3"]


def test_render_table_is_a_pipe_table_and_checks_width():
    text = render_table(Table(["a", "b"], [[1, None]]))
    assert text.splitlines()[0].startswith("| a") and "n/a" in text
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        render_table(Table(["a", "b"], [[1]]))


def test_result_round_trips_through_json(tmp_path):
    result = BenchmarkResult(benchmark="b", report="r", title="T", metrics={"m": math.nan}, config={"k": [1, 2]},
                             seeds={"s": 1}, sections=[Section("S", tables=[Table(["h"], [[1]])])])
    save_result(result, tmp_path)
    (loaded,) = load_results(tmp_path)
    assert loaded.sections[0].tables[0].rows == [[1]] and loaded.metrics == {"m": None}
    assert loaded.config_hash == stable_hash({"k": [1, 2]})


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1}) != stable_hash({"a": 2, "b": 1})


def test_atomic_write_leaves_no_temp_files_on_error(tmp_path):
    target = tmp_path / "x.md"
    atomic_write_text(target, "first")

    class Boom(str):
        def encode(self, *args):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_text(target, Boom("second"))
    assert target.read_text() == "first" and sorted(os.listdir(tmp_path)) == ["x.md"]


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json: malformed JSON at line 1"):
        read_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")


def test_cli_run_writes_json_report_and_index(toy_benchmark, tmp_path):
    assert cli.main(["run", toy_benchmark, "--out", str(tmp_path), "--device", "cpu", "--seed", "7"]) == 0
    data = json.loads((tmp_path / "results" / "toy-test.json").read_text())
    assert data["seeds"] == {"seed": 7} and data["environment"]["packages"]["torch"]
    assert data["environment"]["device"].startswith("cpu") and data["environment"]["git_commit"]
    report = (tmp_path / "toy.md").read_text()
    assert report.startswith("# Toy report") and "| b " in report and "n/a" in report
    assert "vsbench run toy-test" in report and "commit" in report
    assert "[Toy report](toy.md)" in (tmp_path / "README.md").read_text()
    # re-rendering from the stored JSON gives the same report
    before = report
    write_reports(tmp_path)
    assert (tmp_path / "toy.md").read_text() == before


@pytest.mark.parametrize("spec, message", [
    ("nocolon", "expected MODULE:OBJECT"),
    ("no_such_module_xyz:OBJ", "cannot import module 'no_such_module_xyz'"),
    ("bench.implementations:NOPE", "has no attribute 'NOPE'"),
])
def test_impl_that_cannot_be_loaded_is_a_clear_error(spec, message):
    with pytest.raises(ImplementationError, match=message):
        load_object(spec)


def test_impl_loads_module_objects():
    assert load_object("bench.implementations:PIX2SEQ").name == "reference"


def test_git_state_ignores_rewritten_reports_but_not_code(tmp_path):
    """A run rewrites reports/: that alone must not mark the commit dirty; a changed source file must."""
    import subprocess

    from bench.results import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "a.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "reports" / "a.md").write_text("new\n")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)[1] is True
