"""`vsbench` / `python -m bench`: run, list and report benchmarks (plus commands modules register).

Usage errors (an unknown benchmark, a bad --device, CUDA asked for without one, --out naming a file,
an unusable cache, diff without --benchmark) print one line with the fix and exit with code 2;
`--debug` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench import __version__, distributed
from bench.device import DEVICE_CHOICES, describe_device, resolve_device
from bench.publish import OutputFolderError, Staging, check_output_folder, recover
from bench.registry import RunContext, all_benchmarks, all_commands, get_benchmark
from bench.report import render_reports, write_reports
from bench.results import BenchmarkResult, Section, Table, capture_environment, save_result
from bench.samples import CacheError, SampleStore

DEFAULT_OUT = Path("reports")


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit code 2."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1 (omit --limit to evaluate every sample)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"vsbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of usage errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run benchmarks (all when none are named) and write their reports")
    run.add_argument("names", nargs="*", metavar="NAME", help="benchmark names (see `vsbench list`); default: all")
    run.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} or cuda:N (default: auto)")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports)")
    run.add_argument("--impl", action="append", default=[], metavar="MODULE:OBJECT",
                     help="an extra implementation for the cases benchmark (repeatable)")
    run.add_argument("--seed", type=int, default=0, help="seed of the random parts of a run (default: 0)")
    run.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of the harness")
    run.add_argument("--cache", type=Path, default=Path(os.environ.get("VSBENCH_CACHE", "runs/cache.sqlite")),
                     help="per-sample cache (SQLite) that makes runs resumable (default: runs/cache.sqlite, "
                          "env VSBENCH_CACHE)")
    run.add_argument("--no-cache", action="store_true", help="recompute every sample (neither read nor write the cache)")
    run.add_argument("--limit", type=positive_int, default=None, metavar="N",
                     help="evaluate only the first N samples (N >= 1)")
    run.add_argument("--strict", action="store_true",
                     help="COCO evaluation refuses suspicious input (xyxy-looking boxes, unknown ids) instead of warning")

    sub.add_parser("list", help="list the registered benchmarks")
    report = sub.add_parser("report", help="re-render every markdown report from the stored JSON results")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports)")
    sub.add_parser("data", add_help=False,
                   help="generate the default dataset into the cache (or --root DIR); --help for options")
    diff = sub.add_parser("diff", help="compare two runs sample by sample (per-sample exports or report folders)")
    diff.add_argument("run_a", type=Path, help="a per-sample export (.jsonl) or a reports folder")
    diff.add_argument("run_b", type=Path, help="the same kind of path for the other run")
    diff.add_argument("--benchmark", default=None, help="which benchmark's export, when the runs are reports folders")
    diff.add_argument("--atol", type=float, default=None,
                      help="absolute tolerance for floats (default: the export's rounding, 1e-4)")

    for command in all_commands():
        command.configure(sub.add_parser(command.name, help=command.help))
    return parser


def cmd_list() -> int:
    for b in all_benchmarks():
        print(f"{b.name:24s} -> reports/{b.report}.md  {b.description}")
    return 0


def recorded_command(argv: list[str]) -> str:
    """The command as a user would type it in the checkout: paths inside it made relative."""
    from bench.plugins import repo_root

    root = repo_root()
    shown = []
    for arg in argv:
        prefix, eq, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        path = Path(value)
        if root is not None and path.is_absolute():
            try:
                value = path.resolve().relative_to(root.resolve()).as_posix() or "."
            except ValueError:
                pass
        shown.append(prefix + eq + value)
    return "vsbench " + " ".join(shlex.quote(a) for a in shown)


def _failure_result(bench, error: str, tb: str) -> BenchmarkResult:
    return BenchmarkResult(benchmark=bench.name, report=bench.report, title=f"{bench.name}: failed run",
                           metrics={}, config={}, seeds={}, ok=False, problems=[error],
                           sections=[Section("The run raised", f"```\n{tb.strip()[-4000:]}\n```")])


def _attach_stage_failures(result: BenchmarkResult, ctx: RunContext) -> None:
    """Stage failures recorded by ctx.run_stage become a section; required ones fail the run."""
    if not ctx.stage_failures:
        return
    rows = [[f["stage"], "yes" if f["required"] else "no", f["error"][:300]] for f in ctx.stage_failures]
    result.sections.append(Section("Stages that raised", (
        "Each stage runs isolated (`RunContext.run_stage`): its exception is recorded here and the other "
        "stages' results are kept. A required stage failing makes the run a failed run."),
        tables=[Table(["stage", "required", "error"], rows, kinds=["text", "text", "text"])]))
    required = [f for f in ctx.stage_failures if f["required"]]
    if required:
        result.ok = False
        result.problems += [f"stage {f['stage']!r} raised {f['error']}" for f in required]


def _finish(bench, ctx: RunContext, result: BenchmarkResult | None, error: tuple[str, str] | None,
            staging: Staging, device, command: str, seconds: float) -> bool:
    """Publish a good run, or keep a failed one beside it; True when published."""
    if result is None:
        result = _failure_result(bench, *(error or ("the benchmark returned no result", "")))
    if not isinstance(result, BenchmarkResult):
        result = _failure_result(bench, f"the benchmark returned a {type(result).__name__}, not a BenchmarkResult", "")
    result.wall_time_s = seconds
    result.command = command
    result.environment = capture_environment(describe_device(device))
    result.sample_counts = dict(ctx.sample_counts)
    _attach_stage_failures(result, ctx)
    result.artifacts = staging.artifacts()
    # what readers will see: the result as its JSON file holds it (sorted keys, NaN -> null), so that the
    # report rendered now equals the one `vsbench report` renders later from the file
    result = BenchmarkResult.from_dict(json.loads(json.dumps(result.to_dict(), sort_keys=True)))

    def write_published(folder: Path) -> None:
        save_result(result, folder)
        for name, text in render_reports(ctx.out_dir, replace=result, only={result.report}).items():
            (folder / name).write_text(text, encoding="utf-8")

    def write_failed(folder: Path) -> None:
        from bench.report import render_report
        from bench.storage import write_json

        write_json(folder / "results.json", result.to_dict())
        (folder / "report.md").write_text(render_report(result.report, [result]), encoding="utf-8")
        if error:
            (folder / "error.txt").write_text(error[1], encoding="utf-8")

    if result.ok:
        staging.publish(write_published)
        print(f"[vsbench] {bench.name}: done in {seconds:.1f} s -> {ctx.out_dir / (result.report + '.md')}", flush=True)
        return True
    target = staging.keep_as_failed(write_failed)
    from bench.storage import atomic_write_text

    atomic_write_text(ctx.out_dir / "README.md", render_reports(ctx.out_dir, only=set())["README.md"])  # lists it
    for problem in result.problems or ["a check did not hold"]:
        print(f"[vsbench] {bench.name}: FAILED: {problem}", file=sys.stderr, flush=True)
    print(f"[vsbench] {bench.name}: failed run kept in {target} (the published results were not touched)",
          file=sys.stderr, flush=True)
    return False


def cmd_run(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as err:
        raise UsageError(f"{err}; use --device auto (CUDA when present, else CPU) or --device cpu") from err
    names = args.names or [b.name for b in all_benchmarks()]
    try:
        benchmarks = [get_benchmark(n) for n in names]  # unknown names fail before anything runs
    except KeyError as err:
        raise UsageError(f"{err.args[0]} (see `vsbench list`)") from err
    out = check_output_folder(args.out).resolve()
    store = None if args.no_cache else SampleStore(args.cache)
    distributed.init_from_env(device)
    main_rank = distributed.is_main()
    if main_rank:
        recover(out)
    command = recorded_command(["run"] + args.argv[1:] if args.argv[:1] == ["run"] else args.argv)
    failed = []
    for bench in benchmarks:
        if not (main_rank or bench.distributed):
            continue  # a benchmark that does not shard runs on rank 0 only
        staging = Staging(out, bench.name) if main_rank else None
        ctx = RunContext(out_dir=out, device=device, seed=args.seed, impls=list(args.impl), quick=args.quick,
                         command=command, store=store, limit=args.limit, strict=args.strict,
                         staging=staging.folder if staging else None)
        world = distributed.world_size()
        print(f"[vsbench] {bench.name}: running on {describe_device(device)}"
              f"{f' (rank {distributed.rank()} of {world})' if world > 1 else ''}", flush=True)
        start = time.perf_counter()
        result, error = None, None
        try:
            result = bench.run(ctx)
        except Exception as err:  # keep going: one broken benchmark must not lose the others' results
            error = (f"{type(err).__name__}: {err}", traceback.format_exc())
            traceback.print_exc()
            if world > 1:  # a rank that fails stops every rank within seconds (bounded waits)
                distributed.post_abort(f"{bench.name}: {error[0]}")
                if staging is not None:
                    _finish(bench, ctx, None, error, staging, device, command, time.perf_counter() - start)
                print(f"[vsbench] rank {distributed.rank()}: stopping every rank after: {error[0]} "
                      f"(at unix time {time.time():.3f})", file=sys.stderr, flush=True)
                return 1
        if staging is None:
            continue  # not rank 0: this rank's samples went to rank 0, which publishes
        if not _finish(bench, ctx, result, error, staging, device, command, time.perf_counter() - start):
            failed.append(bench.name)
    distributed.barrier("end of run")
    if not main_rank:
        return 0
    if failed:
        print(f"[vsbench] FAILED: {', '.join(failed)} (kept under {out / 'failed'})", file=sys.stderr)
        return 1
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from bench.diff import diff_runs, format_diff

    try:
        print(format_diff(diff_runs(args.run_a, args.run_b, args.benchmark, atol=args.atol)))
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:  # options belong to the generator's own parser
        from bench.datasets.synthetic import main as generate_main

        return generate_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = [a for a in argv if a != "--debug"]
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "diff":
            return cmd_diff(args)
        if args.command == "report":
            out = check_output_folder(args.out)
            recover(out)
            for path in write_reports(out):
                print(path)
            return 0
        handler = {c.name: c.handler for c in all_commands()}[args.command]
        return int(handler(args) or 0)
    except (UsageError, OutputFolderError, CacheError, distributed.RankFailed) as err:
        if args.debug:
            traceback.print_exc()
        print(f"vsbench: error: {err}", file=sys.stderr)
        return 2 if not isinstance(err, distributed.RankFailed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
