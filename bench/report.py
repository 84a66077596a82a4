"""The one markdown writer every report goes through.

Reports are rendered from stored `BenchmarkResult`s: tabulate pipe tables, "n/a" for undefined
values (None, NaN), the command and environment that produced them, atomic writes, and
`reports/README.md` indexing every report.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from bench.registry import REPORT_TITLES, all_benchmarks
from bench.results import BenchmarkResult, Table, load_results
from bench.storage import atomic_write_text

NA = "n/a"


def is_undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def significant(value: float, digits: int = 3) -> str:
    """`value` with `digits` significant digits and never in scientific notation (1234.5 -> '1235',
    0.012345 -> '0.0123', 999.7 -> '1000')."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    if decimals and math.floor(math.log10(abs(float(text)))) > math.floor(math.log10(abs(value))):
        text = f"{value:.{max(0, decimals - 1)}f}"  # rounding carried into a new digit: 9.996 -> '10.0'
    return text


KINDS = ("metric", "seconds", "ms", "ratio", "count", "percent", "rate", "diff", "text")


def format_number(value: float, kind: str = "metric", floatfmt: str = ".4f") -> str:
    """The one rule for numbers in reports: times in s or ms with 3 significant digits, ratios with 3
    and an 'x', counts as integers, metrics with `floatfmt` decimals; only "diff" (a tiny difference)
    may use scientific notation. See `Table.kinds`."""
    if kind == "seconds" or kind == "ms":
        seconds = value / 1000.0 if kind == "ms" else value
        return f"{significant(seconds * 1000)} ms" if abs(seconds) < 1 else f"{significant(seconds)} s"
    if kind == "ratio":
        return f"{significant(value)}x"
    if kind == "count":
        return str(int(round(value)))
    if kind == "percent":
        return f"{value:.1f}%"
    if kind == "rate":
        return significant(value)
    if kind == "diff":
        return "0" if value == 0 else f"{value:.2g}"
    if kind not in KINDS:
        raise ValueError(f"unknown column kind {kind!r}; one of {', '.join(KINDS)}")
    text = format(value, floatfmt)
    return significant(value) if "e" in text.lower() and "n" not in text.lower() else text


def format_cell(value: Any, floatfmt: str = ".4f", kind: str | None = None) -> str:
    """One table cell as text: n/a for None/NaN, yes/no for booleans, numbers by `format_number`,
    everything else via str."""
    if is_undefined(value):
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    kind = kind or "metric"
    if isinstance(value, int) and kind in ("metric", "count", "text"):
        return str(value)
    if isinstance(value, (int, float)) and kind != "text":
        return format_number(float(value), kind, floatfmt)
    return str(value)


def render_table(table: Table) -> str:
    kinds = table.kinds or ["metric"] * len(table.headers)
    if len(kinds) != len(table.headers):
        raise ValueError(f"table {table.title!r}: {len(kinds)} kinds for {len(table.headers)} columns")
    for i, row in enumerate(table.rows):
        if len(row) != len(table.headers):
            raise ValueError(f"table {table.title!r}: row {i} has {len(row)} cells, headers have {len(table.headers)}")
    rows = [[format_cell(v, table.floatfmt, k) for v, k in zip(row, kinds)] for row in table.rows]
    parts = []
    if table.title:
        parts.append(f"**{table.title}**\n")
    parts.append(tabulate(rows, headers=table.headers, tablefmt="pipe", disable_numparse=True))
    if table.note:
        parts.append(f"\n_{table.note}_")
    return "\n".join(parts)


def render_environment(result: BenchmarkResult, artifact_problems: list[str] | None = None) -> str:
    env = result.environment
    if env is None:
        return "_environment not recorded_"
    pkgs = ", ".join(f"{k} {v}" for k, v in env.packages.items() if v != "not installed")
    dirty = " (with uncommitted changes)" if env.git_dirty else ""
    lines = [
        f"- command: `{result.command}`",
        f"- commit: `{env.git_commit}`{dirty}; run at {env.timestamp}",
        f"- device: {env.device}; {env.cpu_count} CPU cores; Python {env.python} on {env.platform}",
        f"- packages: {pkgs}",
        f"- config hash `{result.config_hash}`; seeds {result.seeds or NA}; wall time {result.wall_time_s:.1f} s",
    ]
    cache = result.sample_counts
    if cache:
        lines.append("- per-sample outputs: " + "; ".join(
            f"`{name}` {c.get('computed', 0)} computed, {c.get('cached', 0)} from the cache" for name, c in sorted(cache.items())))
    if result.artifacts:
        lines.append("- files of this run (sha256 in the results JSON): "
                     + ", ".join(f"`{rel}`" for rel in sorted(result.artifacts)))
    for problem in artifact_problems or []:
        lines.append(f"- **WARNING: {problem}**")
    return "\n".join(lines)


def render_result(result: BenchmarkResult, level: int = 2, artifact_problems: list[str] | None = None) -> str:
    hashes = "#" * level
    parts = [f"{hashes} {result.title}"]
    for section in result.sections:
        parts.append(f"{hashes}# {section.heading}")
        if section.text:
            parts.append(section.text.strip())
        parts.extend(render_table(t) for t in section.tables)
        parts.extend(f"![{f.caption}]({f.path})\n\n_{f.caption}_" for f in section.figures)
    parts.append(f"{hashes}# How this was produced\n\n{render_environment(result, artifact_problems)}")
    return "\n\n".join(parts)


def report_title(stem: str) -> str:
    return REPORT_TITLES.get(stem, stem.replace("_", " ").replace("-", " ").capitalize())


def render_report(stem: str, results: Iterable[BenchmarkResult], out_dir: Path | None = None) -> str:
    """The markdown of one report; with `out_dir`, each result's artefacts are re-hashed there and any
    mismatch is printed as a warning in the report."""
    from bench.publish import verify_artifacts

    results = list(results)
    header = [f"# {report_title(stem)}",
              "_Generated by vsbench from the stored results in `results/`; do not edit by hand. "
              "Regenerate with `tox -e bench` (or `vsbench run`), re-render with `vsbench report`._"]
    body = [render_result(r, artifact_problems=verify_artifacts(out_dir, r.artifacts) if out_dir else None)
            for r in results]
    return "\n\n".join(header + body) + "\n"


def _ordered(results: list[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
    order = {b.name: (b.report, b.order) for b in all_benchmarks()}
    grouped: dict[str, list[BenchmarkResult]] = {}
    for r in sorted(results, key=lambda r: order.get(r.benchmark, (r.report, 99)) + (r.benchmark,)):
        grouped.setdefault(r.report, []).append(r)
    return grouped


def render_reports(out_dir: str | os.PathLike, replace: BenchmarkResult | None = None,
                   only: set[str] | None = None) -> dict[str, str]:
    """{file name: markdown} of the reports (and README.md index) from the results under out_dir/results,
    with `replace` standing in for the stored result of its benchmark; `only` limits which report
    stems are rendered (the index is always)."""
    out_dir = Path(out_dir)
    skipped: list[str] = []
    results = [r for r in load_results(out_dir, skipped) if replace is None or r.benchmark != replace.benchmark]
    if replace is not None:
        results.append(replace)
    grouped = _ordered(results)
    files = {f"{stem}.md": render_report(stem, rs, out_dir if replace is None else None)
             for stem, rs in grouped.items() if only is None or stem in only}
    files["README.md"] = render_index(out_dir, grouped, skipped)
    return files


def write_reports(out_dir: str | os.PathLike) -> list[Path]:
    """Re-render every report and the index from the JSON results stored under out_dir/results."""
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / name, text) for name, text in render_reports(out_dir).items()]


def render_index(out_dir: Path, grouped: dict[str, list[BenchmarkResult]], skipped: list[str] | None = None) -> str:
    from bench.publish import read_failed

    rows = []
    for stem, results in sorted(grouped.items()):
        commits = sorted({r.environment.git_commit[:10] for r in results if r.environment})
        devices = sorted({r.environment.device for r in results if r.environment})
        rows.append([f"[{report_title(stem)}]({stem}.md)", ", ".join(r.benchmark for r in results),
                     ", ".join(devices) or NA, ", ".join(commits) or NA,
                     max((r.environment.timestamp for r in results if r.environment), default=NA)])
    known = {b.report for b in all_benchmarks()}
    missing = sorted(known - set(grouped))
    text = [
        "# vsbench reports",
        "Every report here is generated by `tox -e bench` from a run; the JSON results behind each "
        "one (metrics, config and its hash, seeds, package versions, device, git commit, and the sha256 "
        "of every file the run wrote) are in [`results/`](results/).",
        tabulate(rows, headers=["report", "benchmarks", "device", "commit", "generated (UTC)"], tablefmt="pipe"),
    ]
    if missing:
        text.append("Not generated yet: " + ", ".join(f"`{m}`" for m in missing) + ".")
    failed = read_failed(out_dir)
    if failed:
        text.append("Failed runs, kept beside the published ones (not part of the reports above): " + ", ".join(
            f"[`{name}`](failed/{name}/report.md) ({'; '.join(data.get('problems') or ['failed'])[:160]})"
            for name, data in sorted(failed.items())) + ".")
    if skipped:
        text.append("Results files that could not be read and were left out: "
                    + "; ".join(f"`{m}`" for m in skipped) + ".")
    return "\n\n".join(text) + "\n"
