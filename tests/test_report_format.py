"""The one number-formatting rule of the report writer (bench/report.py) and interleaved timing (bench/timing.py)."""

import math

import pytest
from hypothesis import given, strategies as st

from bench.report import format_cell, format_number, render_table, significant
from bench.results import Table
from bench.timing import Ratio, compare


@pytest.mark.parametrize("value, text", [(1234.5, "1234"), (0.012345, "0.0123"), (999.7, "1000"), (9.996, "10.0"),
                                         (33350.0, "33350"), (1.0, "1.00"), (12.345, "12.3"), (-0.5, "-0.500")])
def test_three_significant_digits_without_exponent(value, text):
    assert significant(value) == text


@given(st.floats(min_value=1e-6, max_value=1e9))
def test_no_report_number_is_in_scientific_notation_unless_a_diff(value):
    for kind in ("metric", "seconds", "ms", "ratio", "count", "percent", "rate"):
        text = format_number(value, kind, ".4g")
        assert "e" not in text.replace("ms", "").replace(" s", ""), (kind, value, text)


@given(st.floats(min_value=1e-4, max_value=1e6))
def test_significant_keeps_three_digits_of_precision(value):
    assert math.isclose(float(significant(value)), value, rel_tol=5.01e-3)


def test_kinds_render_times_ratios_and_counts():
    table = Table(["t", "ms", "r", "n", "m"], [[33.35, 149100.0, 87.18, 3.0, 0.123456]],
                  kinds=["seconds", "ms", "ratio", "count", "metric"])
    line = render_table(table).splitlines()[-1]
    assert [c.strip() for c in line.strip("|").split("|")] == ["33.4 s", "149 s", "87.2x", "3", "0.1235"]
    assert format_cell(None) == "n/a" and format_cell(float("nan"), kind="seconds") == "n/a"
    assert format_cell(True) == "yes" and format_cell(7) == "7"


def test_wrong_kind_count_and_unknown_kind_are_errors():
    with pytest.raises(ValueError, match="kinds"):
        render_table(Table(["a", "b"], [[1, 2]], kinds=["count"]))
    with pytest.raises(ValueError, match="unknown column kind"):
        format_number(1.0, "speed")


def test_compare_interleaves_and_alternates_the_order():
    calls = []
    timings = compare({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then A B, B A, ...
    assert len(timings.wall["a"]) == len(timings.cpu["b"]) == 4
    assert set(timings.record()["methods"]) == {"a", "b"}


def test_ratio_flags_rounds_that_disagree():
    assert Ratio([10.0, 10.5, 9.8]).steady
    unsteady = Ratio([10.0, 20.0, 5.0])
    assert not unsteady.steady and "UNSTEADY" in unsteady.text()
    assert not Ratio([10.0]).steady  # one round cannot show its spread
