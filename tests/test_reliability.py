"""Every bad input of the table gives the clear error (or the defined result) it promises."""

import pytest

from bench.reliability import BAD_INPUTS, check


@pytest.mark.parametrize("entry", BAD_INPUTS, ids=[e.name for e in BAD_INPUTS])
def test_bad_input_gives_a_clear_error(entry, tmp_path):
    outcome = check(entry, tmp_path)
    assert outcome.ok, f"{entry.name}: expected {entry.expected}, saw {outcome.seen}"


def test_the_judge_rejects_a_wrong_message(tmp_path):
    from dataclasses import replace

    entry = replace(BAD_INPUTS[0], pattern="a message nobody writes")
    assert not check(entry, tmp_path).ok
