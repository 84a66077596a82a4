"""`vsbench` usage errors: one line naming the problem and the fix, exit code 2, no traceback (--debug shows it)."""

import argparse
import sys

import pytest

from bench import __version__, cli


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsbench: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_unknown_benchmark_names_it_and_the_valid_names(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "no-such-benchmark", "--out", str(tmp_path / "r"))
    assert_usage_error(code, err, "'no-such-benchmark'", "valid names:", "detection", "vsbench list")
    assert not (tmp_path / "r").exists()  # checked before anything is created


def test_bad_device_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "sigma", "--device", "tpu", "--out", str(tmp_path))
    assert_usage_error(code, err, "--device 'tpu'", "--device auto")


def test_cuda_without_a_gpu_is_a_usage_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be exercised")
    code, _, err = run_cli(capsys, "run", "sigma", "--device", "cuda", "--out", str(tmp_path))
    assert_usage_error(code, err, "CUDA was requested", "--device cpu")


def test_out_pointing_at_a_file_is_a_usage_error(capsys, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    code, _, err = run_cli(capsys, "run", "sigma", "--out", str(target))
    assert_usage_error(code, err, str(target), "is a file")
    code, _, err = run_cli(capsys, "run", "sigma", "--out", str(target / "below"))
    assert_usage_error(code, err, "cannot be used")


@pytest.mark.parametrize("limit", ["0", "-190", "ten"])
def test_limit_must_be_a_positive_integer(capsys, limit):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "sigma", "--limit", limit])
    assert exc.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_diff_of_folders_without_benchmark_lists_the_exports(capsys, tmp_path):
    for run in ("a", "b"):
        (tmp_path / run / "samples").mkdir(parents=True)
        (tmp_path / run / "samples" / "detection.jsonl").write_text('{"run": {}}\n')
    code, _, err = run_cli(capsys, "diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert_usage_error(code, err, "--benchmark", "detection")


def test_corrupt_cache_names_the_file_and_the_fix(capsys, tmp_path):
    cache = tmp_path / "cache.sqlite"
    cache.write_bytes(b"this is not a database" * 100)
    code, _, err = run_cli(capsys, "run", "sigma", "--out", str(tmp_path / "r"), "--cache", str(cache))
    assert_usage_error(code, err, str(cache), "--no-cache")


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--debug", "run", "no-such-benchmark", "--out", str(tmp_path))
    assert code == 2 and "Traceback" in err and "unknown benchmark" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"vsbench {__version__}"


def test_every_option_of_every_command_has_help():
    def walk(prefix, parser):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or prefix == "data":
                continue
            if not action.help:
                yield f"{prefix} {'/'.join(action.option_strings) or action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(f"{prefix} {name}".strip(), sub)

    top = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [m for name, sub in top.choices.items() for m in walk(name, sub)]
    assert not missing, f"options without help text: {missing}"


def test_recorded_command_is_relative_to_the_checkout():
    from bench.plugins import repo_root

    root = repo_root()
    assert cli.recorded_command(["run", "--out", str(root / "reports"), f"--cache={root}/runs/c.sqlite"]) == \
        "vsbench run --out reports --cache=runs/c.sqlite"
    assert cli.recorded_command(["run", "--out", "/elsewhere/x"]) == "vsbench run --out /elsewhere/x"


def test_module_entry_point_exits_2_on_usage_error(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bench", "run", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown benchmark 'nope'" in proc.stderr
