"""Captioning codec of a Pix2SeqV2 implementation: word round trip, unknown words, empty captions, garbage."""

import pytest
from hypothesis import given, strategies as st

pytestmark = pytest.mark.pix2seqv2


@pytest.fixture(scope="module")
def ids(api):
    """The implementation's fixed token ids (num_bins, eos, task tokens, ...)."""
    return dict(api.token_layout)

TRAIN = ["A red circle left of a blue square", "two green triangles", "the yellow star is above the circle"]
KNOWN = sorted({w for c in TRAIN for w in c.lower().split()})


@pytest.fixture(scope="module")
def words(api):
    return api.build_words(TRAIN)


@given(caption=st.lists(st.sampled_from(KNOWN), max_size=12))
def test_round_trip_of_known_words(api, ids, words, caption):
    text = " ".join(caption)
    tokens = api.encode_caption(words, text)
    assert tokens[0] == ids["captioning"] and tokens[-1] == ids["eos"]
    assert all(t >= ids["word_start"] for t in tokens[1:-1])
    assert api.decode_caption(words, tokens) == text


def test_case_and_punctuation_do_not_make_new_words(api, words):
    assert api.encode_caption(words, "Two GREEN triangles.") == api.encode_caption(words, "two green triangles")


def test_unknown_words_share_one_id(api, ids, words):
    tokens = api.encode_caption(words, "a purple hexagon")
    assert len(tokens) == 5 and tokens[2] == tokens[3] and tokens[2] >= ids["word_start"]
    known_ids = set(api.encode_caption(words, " ".join(KNOWN))[1:-1])
    assert tokens[2] not in known_ids
    decoded = api.decode_caption(words, tokens).split(" ")
    assert decoded[0] == "a" and decoded[1] == decoded[2] and decoded[1] not in KNOWN


@pytest.mark.parametrize("caption", ["", "   ", ".,;"])
def test_empty_caption(api, ids, words, caption):
    tokens = api.encode_caption(words, caption)
    assert tokens == [ids["captioning"], ids["eos"]]
    assert api.decode_caption(words, tokens) == ""


def test_caption_past_eos_is_ignored(api, words):
    tokens = api.encode_caption(words, "two green triangles") + api.encode_caption(words, "a red circle")[1:]
    assert api.decode_caption(words, tokens) == "two green triangles"


@given(row=st.lists(st.integers(-10, 5000), max_size=60))
def test_garbage_rows_never_raise(api, words, row):
    assert isinstance(api.decode_caption(words, row), str)
