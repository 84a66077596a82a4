"""Captioning codec of a Pix2SeqV2 implementation: word round trip, unknown words, empty captions,
tokens that are not words, garbage."""

import pytest
from hypothesis import given, strategies as st

from cases.strategies_v2 import once
from cases.strategies_v2 import ids  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2

TRAIN = ["A red circle left of a blue square", "two green triangles", "the yellow star is above the circle"]
KNOWN = sorted({w for c in TRAIN for w in c.lower().split()})


@pytest.fixture(scope="module")
def word_list(api):
    """word_list() -> the implementation's word list of TRAIN, built inside the case."""
    return once(lambda: api.build_words(TRAIN))


@pytest.mark.case(stands_for="caption round trip of known words", stage="encode_caption")
@given(caption=st.lists(st.sampled_from(KNOWN), max_size=12))
def test_round_trip_of_known_words(api, ids, word_list, caption):
    words = word_list()
    text = " ".join(caption)
    tokens = list(api.encode_caption(words, text))
    assert tokens[0] == ids["captioning"] and tokens[-1] == ids["eos"]
    assert all(t >= ids["word_start"] for t in tokens[1:-1])
    assert api.decode_caption(words, tokens) == text


@pytest.mark.case(stands_for="case and punctuation make no new words", stage="encode_caption")
def test_case_and_punctuation_do_not_make_new_words(api, word_list):
    words = word_list()
    assert api.encode_caption(words, "Two GREEN triangles.") == api.encode_caption(words, "two green triangles")


@pytest.mark.case(stands_for="unknown words share one id outside the known ones", stage="encode_caption")
def test_unknown_words_share_one_id(api, ids, word_list):
    words = word_list()
    tokens = list(api.encode_caption(words, "a purple hexagon"))
    assert len(tokens) == 5 and tokens[2] == tokens[3] and tokens[2] >= ids["word_start"]
    known_ids = set(api.encode_caption(words, " ".join(KNOWN))[1:-1])
    assert tokens[2] not in known_ids
    decoded = api.decode_caption(words, tokens).split(" ")
    assert decoded[0] == "a" and decoded[1] == decoded[2] and decoded[1] not in KNOWN


@pytest.mark.case(stands_for="an empty caption is [CAP, EOS] and decodes to ''", stage="encode_caption")
@pytest.mark.parametrize("caption", ["", "   ", ".,;"])
def test_empty_caption(api, ids, word_list, caption):
    words = word_list()
    tokens = list(api.encode_caption(words, caption))
    assert tokens == [ids["captioning"], ids["eos"]]
    assert api.decode_caption(words, tokens) == ""


@pytest.mark.case(stands_for="words after EOS are ignored", stage="decode_caption")
def test_caption_past_eos_is_ignored(api, word_list):
    words = word_list()
    tokens = list(api.encode_caption(words, "two green triangles")) + list(api.encode_caption(words, "a red circle"))[1:]
    assert api.decode_caption(words, tokens) == "two green triangles"


@pytest.mark.case(stands_for="tokens that are not words (PAD, coordinates, classes, separator, invisible, task "
                  "tokens) make no word (a public Pix2SeqV2 read each as '<unk>')", stage="decode_caption")
@given(caption=st.lists(st.sampled_from(KNOWN), min_size=1, max_size=8), data=st.data())
def test_tokens_that_are_not_words_make_no_word(api, ids, word_list, caption, data):
    words = word_list()
    tokens = list(api.encode_caption(words, " ".join(caption)))
    intruders = [ids["pad"], 0, ids["num_bins"] - 1, ids["num_bins"], ids["separator"], ids["invisible"],
                 ids["detection"], ids["bos"]]
    for _ in range(data.draw(st.integers(1, 4), label="intruders")):
        at = data.draw(st.integers(1, len(tokens) - 1), label="position")
        tokens.insert(at, data.draw(st.sampled_from(intruders), label="token"))
    assert api.decode_caption(words, tokens) == " ".join(caption)


@pytest.mark.case(stands_for="decode_caption never raises on what a model emits", stage="decode_caption")
@given(row=st.lists(st.integers(0, 5000), max_size=60))
def test_garbage_rows_never_raise(api, word_list, row):
    words = word_list()
    assert isinstance(api.decode_caption(words, row), str)
