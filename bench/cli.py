"""`vsbench` / `python -m bench`: run, list and report benchmarks (plus commands modules register)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench import distributed
from bench.device import DEVICE_CHOICES, describe_device, resolve_device
from bench.registry import RunContext, all_benchmarks, all_commands, get_benchmark
from bench.report import write_reports
from bench.results import capture_environment, save_result
from bench.samples import SampleStore

DEFAULT_OUT = Path("reports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run benchmarks (all when none are named) and write their reports")
    run.add_argument("names", nargs="*", help="benchmark names (see `vsbench list`)")
    run.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} or cuda:N")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports)")
    run.add_argument("--impl", action="append", default=[], metavar="MODULE:OBJECT",
                     help="an extra implementation for the cases benchmark (repeatable)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of the harness")
    run.add_argument("--cache", type=Path, default=Path(os.environ.get("VSBENCH_CACHE", "runs/cache.sqlite")),
                     help="per-sample cache (SQLite) that makes runs resumable (default: runs/cache.sqlite)")
    run.add_argument("--no-cache", action="store_true", help="recompute every sample")
    run.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    run.add_argument("--strict", action="store_true",
                     help="COCO evaluation refuses suspicious input (xyxy-looking boxes, unknown ids) instead of warning")

    sub.add_parser("list", help="list the registered benchmarks")
    report = sub.add_parser("report", help="re-render every markdown report from the stored JSON results")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    sub.add_parser("data", add_help=False,
                   help="generate the default dataset into the cache (or --root DIR); --help for options")
    diff = sub.add_parser("diff", help="compare two runs sample by sample (per-sample exports or report folders)")
    diff.add_argument("run_a", type=Path)
    diff.add_argument("run_b", type=Path)
    diff.add_argument("--benchmark", default=None, help="which benchmark, when runs are report folders")

    for command in all_commands():
        command.configure(sub.add_parser(command.name, help=command.help))
    return parser


def cmd_list() -> int:
    for b in all_benchmarks():
        print(f"{b.name:24s} -> reports/{b.report}.md  {b.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    distributed.init_from_env(device)
    main_rank = distributed.is_main()
    store = None if args.no_cache else SampleStore(args.cache)
    names = args.names or [b.name for b in all_benchmarks()]
    benchmarks = [get_benchmark(n) for n in names]  # unknown names fail before anything runs
    command = "vsbench " + " ".join(shlex.quote(a) for a in args.argv)
    out = args.out.resolve()
    failed = []
    for bench in benchmarks:
        if not (main_rank or bench.distributed):
            continue  # a benchmark that does not shard runs on rank 0 only
        ctx = RunContext(out_dir=out, device=device, seed=args.seed, impls=list(args.impl),
                         quick=args.quick, command=command, store=store, limit=args.limit,
                         strict=args.strict)
        print(f"[vsbench] {bench.name}: running on {describe_device(device)}"
              f"{f' (rank {distributed.rank()} of {distributed.world_size()})' if distributed.world_size() > 1 else ''}",
              flush=True)
        start = time.perf_counter()
        try:
            result = bench.run(ctx)
        except Exception:  # keep going: one broken benchmark must not lose the others' results
            traceback.print_exc()
            failed.append(bench.name)
            continue
        if not main_rank:
            continue  # rank 0 gathered this rank's samples and writes the results
        result.wall_time_s = time.perf_counter() - start
        result.command = command
        result.environment = capture_environment(describe_device(device))
        save_result(result, out)
        if not result.ok:
            failed.append(bench.name)
            for problem in result.problems or [f"a check did not hold; see reports/{result.report}.md"]:
                print(f"[vsbench] {bench.name}: FAILED CHECK: {problem}", file=sys.stderr, flush=True)
        print(f"[vsbench] {bench.name}: done in {result.wall_time_s:.1f} s -> reports/{result.report}.md", flush=True)
        write_reports(out)
    distributed.barrier()
    if not main_rank:
        return 1 if failed else 0
    write_reports(out)
    if failed:
        print(f"[vsbench] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:  # options belong to the generator's own parser
        from bench.datasets.synthetic import main as generate_main

        return generate_main(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "list":
        return cmd_list()
    if args.command == "run":
        return cmd_run(args)
    if args.command == "diff":
        from bench.diff import diff_runs, format_diff

        print(format_diff(diff_runs(args.run_a, args.run_b, args.benchmark)))
        return 0
    if args.command == "report":
        for path in write_reports(args.out):
            print(path)
        return 0
    handler = {c.name: c.handler for c in all_commands()}[args.command]
    return int(handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
