"""bench.metrics.bleu: parity with pycocoevalcap's scorers (not its Java tokenizer), a hand-computed
example, corpus BLEU vs the mean of per-sentence BLEU, input validation."""

import copy
import math

import pytest
from hypothesis import given, settings, strategies as st

from bench.metrics.bleu import corpus_bleu, corpus_cider, cider_per_image, sentence_bleu

pycocoevalcap = pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402

WORDS = ["a", "cat", "dog", "sits", "on", "the", "mat", "red", "ball", "near"]


def coco_bleu(hyps, refs):
    scores, _ = Bleu(4).compute_score({i: list(r) for i, r in refs.items()}, {i: [h] for i, h in hyps.items()},
                                      verbose=0)
    return scores


@st.composite
def caption_sets(draw, min_len=1):
    """{id: hypothesis}, {id: [references]}: sentences over a small vocabulary (so n-grams match)."""
    sentence = st.lists(st.sampled_from(WORDS), min_size=min_len, max_size=12).map(" ".join)
    ids = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=8, unique=True))
    hyps = {i: draw(sentence) for i in ids}
    refs = {i: draw(st.lists(sentence, min_size=1, max_size=5)) for i in ids}
    return hyps, refs


def non_degenerate(hyps, refs):
    """Every order has at least one match and one guess, so no epsilon dominates (sacrebleu agrees)."""
    ours = corpus_bleu(hyps, refs)
    return all(v > 1e-3 for v in ours.values())


@settings(max_examples=50)
@given(caption_sets(min_len=4))
def test_bleu_matches_pycocoevalcap_on_non_degenerate_sets(sets):
    hyps, refs = sets
    ours, theirs = corpus_bleu(hyps, refs), coco_bleu(hyps, refs)
    for k in range(4):
        assert abs(ours[f"BLEU-{k + 1}"] - theirs[k]) <= 1e-9


@settings(max_examples=50)
@given(caption_sets(min_len=0))
def test_bleu_matches_pycocoevalcap_on_any_set_including_degenerate(sets):
    """Empty hypotheses, no matching 4-gram, hypotheses shorter than n: the epsilons are reproduced."""
    hyps, refs = sets
    ours, theirs = corpus_bleu(hyps, refs), coco_bleu(hyps, refs)
    assert [ours[f"BLEU-{k + 1}"] for k in range(4)] == pytest.approx(theirs, rel=1e-12, abs=1e-300)


def test_sacrebleu_agrees_only_on_non_degenerate_sets():
    import sacrebleu

    hyps = {1: "a cat sits on the mat", 2: "the dog near a red ball"}
    refs = {1: ["a cat sits on the mat today", "the cat is on the mat"], 2: ["a dog near the red ball"]}
    sb = sacrebleu.corpus_bleu([hyps[1], hyps[2]], [[refs[1][0], refs[2][0]], [refs[1][1], refs[2][0]]],
                               tokenize="none", smooth_method="none")
    assert corpus_bleu(hyps, refs)["BLEU-4"] == pytest.approx(sb.score / 100, abs=1e-9)
    degenerate = corpus_bleu({1: "cat mat"}, {1: ["mat cat"]})  # no matching bigram, hypothesis shorter than 3
    assert degenerate["BLEU-2"] > 0 and degenerate["BLEU-4"] == pytest.approx(coco_bleu({1: "cat mat"},
                                                                                         {1: ["mat cat"]})[3])


def test_hand_computed_example():
    """hyp "the the the cat" vs refs ["the cat", "a cat on the mat"]: testlen 4, closest reflen 5 (|4-2|=2
    vs |4-5|=1). Clipped unigrams: "the" max ref count 1 -> 1, "cat" 1 -> 2 of 4. Bigrams: "the the" x2 (0),
    "the cat" (1) -> 1 of 3. Trigrams: 0 of 2. BP = exp(1 - 5/4)."""
    out = corpus_bleu({"x": "the the the cat"}, {"x": ["the cat", "a cat on the mat"]}, max_n=2)
    bp = math.exp(1 - 5 / 4)
    assert list(out) == ["BLEU-1", "BLEU-2"]
    assert out["BLEU-1"] == pytest.approx(bp * 2 / 4, rel=1e-8)
    assert out["BLEU-2"] == pytest.approx(bp * math.sqrt(2 / 4 * 1 / 3), rel=1e-8)
    tie = corpus_bleu({1: "a b c"}, {1: ["a b", "a b c d"]}, max_n=1)  # |3-2| = |3-4|: shorter (2) is used
    assert tie["BLEU-1"] == pytest.approx(1.0, abs=1e-8)  # testlen 3 >= 2: no brevity penalty


def test_corpus_bleu_is_not_the_mean_of_sentence_bleu():
    hyps = {1: "a cat sits on the mat near a red ball", 2: "the dog on a mat"}
    refs = {1: ["a cat sits on the mat near a red ball"], 2: ["a dog sits on the red mat"]}
    corpus = corpus_bleu(hyps, refs)["BLEU-4"]
    mean = sum(sentence_bleu(hyps[i], refs[i])["BLEU-4"] for i in hyps) / 2
    _, per_image = Bleu(4).compute_score({i: r for i, r in refs.items()}, {i: [h] for i, h in hyps.items()},
                                         verbose=0)
    assert [sentence_bleu(hyps[i], refs[i])["BLEU-4"] for i in hyps] == pytest.approx(per_image[3], rel=1e-12)
    assert corpus == pytest.approx(coco_bleu(hyps, refs)[3], rel=1e-12)
    assert abs(corpus - mean) > 0.1  # corpus 0.692 vs mean 0.500 (1.0 and ~0 per sentence)


def test_inputs_not_mutated_and_order_free():
    hyps = {2: "a cat", 1: "the dog on the mat"}
    refs = {1: ["the dog is on the mat"], 2: ["a cat", "one cat"]}
    before = copy.deepcopy((hyps, refs))
    a = corpus_bleu(hyps, refs)
    assert (hyps, refs) == before
    assert corpus_bleu(dict(reversed(list(hyps.items()))), refs) == a


@pytest.mark.parametrize("hyps, refs, message", [
    ({1: "a"}, {2: ["a"]}, r"1 hypothesis id\(s\) without references \[1\].*1 reference id\(s\) without a hyp.*\[2\]"),
    ({1: "a", 2: "b"}, {1: ["a"], 2: []}, r"references of id 2 are an empty list"),
    ({1: "a"}, {1: "a"}, r"references of id 1 must be a list of str"),
    ({1: ["a"]}, {1: ["a"]}, r"hypothesis of id 1 must be a str"),
    ({1: "a"}, {1: ["a", None]}, r"references of id 1 must all be str"),
    ({}, {}, r"empty corpus"),
])
def test_bad_input_raises_naming_the_id(hyps, refs, message):
    with pytest.raises(ValueError, match=message):
        corpus_bleu(hyps, refs)
    with pytest.raises(ValueError, match=message):
        corpus_cider(hyps, refs)


def test_bad_max_n():
    with pytest.raises(ValueError, match="max_n must be a positive int"):
        corpus_bleu({1: "a"}, {1: ["a"]}, max_n=0)


@settings(max_examples=30)
@given(caption_sets(min_len=0))
def test_cider_matches_pycocoevalcap(sets):
    hyps, refs = sets
    if all(not r.split() for rs in refs.values() for r in rs):
        return  # pycocoevalcap crashes on max() of an empty document-frequency table
    score, per_image = Cider().compute_score({i: list(r) for i, r in refs.items()}, {i: [h] for i, h in hyps.items()})
    assert corpus_cider(hyps, refs) == pytest.approx(score, rel=1e-9, abs=1e-12)
    assert list(cider_per_image(hyps, refs).values()) == pytest.approx(list(per_image), rel=1e-9, abs=1e-12)
