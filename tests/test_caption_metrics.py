"""bench.metrics.captions: coco-caption's table through pycocoevalcap. Values derived by hand (BLEU, ROUGE-L,
CIDEr-D), parity with sacrebleu (an independent BLEU) on non-degenerate sets, properties over generated
sets, input validation, and the Java-dependent parts: PTB tokenisation, METEOR, "n/a (no Java)", SPICE
never downloading and reading CoreNLP only from a local folder."""

import copy
import math

import pytest
from hypothesis import assume, given, settings, strategies as st

from bench.metrics import captions
from bench.metrics.captions import CORENLP_ENV, METRICS, caption_metrics, java_problem, metric_cell

WORDS = ["a", "cat", "dog", "sits", "on", "the", "mat", "red", "ball", "near"]
needs_java = pytest.mark.skipif(java_problem() is not None, reason=f"needs Java: {java_problem()}")


def table(refs, hyps, **kw):
    """The Java-free part (whitespace tokens, no METEOR / SPICE): fast and deterministic."""
    return caption_metrics(refs, hyps, tokenizer="whitespace", meteor=False, spice=False, **kw)


@st.composite
def caption_sets(draw, min_len=1, refs_per_image=None):
    """({id: [references]}, {id: hypothesis}) over a small vocabulary, so n-grams match."""
    sentence = st.lists(st.sampled_from(WORDS), min_size=min_len, max_size=12).map(" ".join)
    ids = draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=8, unique=True))
    count = st.just(refs_per_image) if refs_per_image else st.integers(1, 5)
    refs = {i: draw(st.lists(sentence, min_size=draw(count), max_size=refs_per_image or 5)) for i in ids}
    hyps = {i: draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join)) for i in ids}
    return refs, hyps


def test_bleu_hand_computed():
    """hyp "the the the cat" vs refs ["the cat", "a cat on the mat"]: testlen 4, closest reflen 5 (|4-2| = 2
    vs |4-5| = 1). Clipped unigrams: "the" 1 (max ref count 1) + "cat" 1 = 2 of 4; bigrams: "the cat" = 1 of
    3; trigrams 0 of 2 (so BLEU-3 only gets coco-caption's epsilon). BP = exp(1 - 5/4)."""
    out = table({"x": ["the cat", "a cat on the mat"]}, {"x": "the the the cat"})
    bp = math.exp(1 - 5 / 4)
    assert out["BLEU-1"] == pytest.approx(bp * 2 / 4, rel=1e-8)
    assert out["BLEU-2"] == pytest.approx(bp * math.sqrt(2 / 4 * 1 / 3), rel=1e-8)
    assert 0 < out["BLEU-3"] < 1e-4  # (1e-15 / 2) ** (1/3) * ...: coco-caption never gives exactly 0
    tie = table({1: ["a b", "a b c d"]}, {1: "a b c"})  # |3-2| = |3-4|: the shorter (2) is used
    assert tie["BLEU-1"] == pytest.approx(1.0, abs=1e-8)  # testlen 3 >= 2: no brevity penalty


def test_corpus_bleu_is_not_the_mean_of_per_image_bleu():
    refs = {1: ["a cat sits on the mat near a red ball"], 2: ["a dog sits on the red mat"]}
    hyps = {1: "a cat sits on the mat near a red ball", 2: "the dog on a mat"}
    out = table(refs, hyps)
    per_image = out["per_image"]["BLEU-4"]
    assert per_image[1] == pytest.approx(1.0, abs=1e-8) and per_image[2] < 1e-4  # no matching 3-gram
    assert out["BLEU-4"] == pytest.approx(0.692, abs=1e-3)  # corpus counts: not (1.0 + ~0) / 2
    assert abs(out["BLEU-4"] - sum(per_image.values()) / 2) > 0.1


def test_rouge_l_hand_computed():
    """hyp "a b c", ref "a c d e f": LCS "a c" = 2, P = 2/3, R = 2/5, F = (1 + 1.2^2) P R / (R + 1.2^2 P).
    With a second ref "b c" (P = 2/3, R = 1) pycocoevalcap takes max P and max R over the references."""
    f = lambda p, r: (1 + 1.44) * p * r / (r + 1.44 * p)  # noqa: E731
    assert table({1: ["a c d e f"]}, {1: "a b c"})["ROUGE-L"] == pytest.approx(f(2 / 3, 2 / 5), rel=1e-12)
    assert table({1: ["a c d e f", "b c"]}, {1: "a b c"})["ROUGE-L"] == pytest.approx(f(2 / 3, 1.0), rel=1e-12)


def test_cider_d_hand_computed():
    """Each hypothesis equals its one reference, no n-gram shared between images: every n-gram has df 1 of
    2 documents (idf log 2 > 0), cosine 1 for n = 1..4, no length penalty -> 10 * mean(1, 1, 1, 1) = 10.
    One image alone: idf = log(1) - log(1) = 0 for every n-gram, so CIDEr-D is 0 whatever the caption."""
    refs = {1: ["a red cat sits on the mat"], 2: ["one dog near two balls"]}
    assert table(refs, {1: refs[1][0], 2: refs[2][0]})["CIDEr-D"] == pytest.approx(10.0, rel=1e-12)
    assert table({1: ["a red cat sits"]}, {1: "a red cat sits"})["CIDEr-D"] == 0.0


@st.composite
def edited_references(draw):
    """Two references per image; the hypothesis is the first with words dropped, replaced or added (so most
    sets share n-grams of every order)."""
    refs, _ = draw(caption_sets(min_len=4, refs_per_image=2))
    hyps = {}
    for i, (first, _second) in refs.items():
        words = first.split()
        for _ in range(draw(st.integers(0, 3))):
            k = draw(st.integers(0, len(words) - 1))
            words[k:k + 1] = draw(st.sampled_from([[], [draw(st.sampled_from(WORDS))], [words[k], "near"]]))
        hyps[i] = " ".join(words)
    return refs, hyps


@settings(max_examples=60)
@given(edited_references())
def test_bleu_matches_sacrebleu_on_non_degenerate_sets(sets):
    """sacrebleu (tokenize none, no smoothing) is an independent BLEU; it differs from coco-caption only by
    the epsilons, which matter when some order has no match (those sets are left out: BLEU-4 > 1e-3)."""
    sacrebleu = pytest.importorskip("sacrebleu")
    refs, hyps = sets
    ours = table(refs, hyps)
    assume(ours["BLEU-4"] > 1e-3 and all(h.split() for h in hyps.values()))
    ids = list(hyps)
    theirs = sacrebleu.corpus_bleu([hyps[i] for i in ids], [[refs[i][k] for i in ids] for k in range(2)],
                                   tokenize="none", smooth_method="none")
    assert ours["BLEU-4"] == pytest.approx(theirs.score / 100, abs=1e-8)


@settings(max_examples=40)
@given(caption_sets(min_len=4))
def test_a_hypothesis_equal_to_a_reference_scores_one(sets):
    """Hypothesis = its shortest reference (>= 4 words): every n-gram matches and that reference is the
    closest length, so no brevity penalty: BLEU-1..4 = 1 (up to the 1e-9 epsilons), ROUGE-L = 1."""
    refs, _ = sets
    out = table(refs, {i: min(r, key=lambda x: len(x.split())) for i, r in refs.items()})
    assert [out[f"BLEU-{n}"] for n in range(1, 5)] == pytest.approx([1.0] * 4, abs=1e-8)
    assert out["ROUGE-L"] == pytest.approx(1.0)


@settings(max_examples=40)
@given(caption_sets(min_len=1))
def test_order_free_inputs_untouched_scores_in_range(sets):
    refs, hyps = sets
    before = copy.deepcopy((refs, hyps))
    out = table(refs, hyps)
    assert (refs, hyps) == before
    again = table(dict(reversed(list(refs.items()))), dict(reversed(list(hyps.items()))))
    for m in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"):
        assert again[m] == pytest.approx(out[m], rel=1e-12, abs=1e-15)
        assert again["per_image"].get(m, {}) == pytest.approx(out["per_image"].get(m, {}), rel=1e-12, abs=1e-15)
    assert all(0 <= out[f"BLEU-{n}"] <= 1 for n in range(1, 5)) and 0 <= out["ROUGE-L"] <= 1
    assert out["CIDEr-D"] >= 0 and out["num_images"] == len(hyps)
    assert set(out["per_image"]["CIDEr-D"]) == set(hyps)


def test_an_empty_caption_is_scored_not_refused():
    """A model that emits nothing for an image scores 0 there (coco-caption's behaviour), not an error."""
    out = table({1: ["a red circle"], 2: ["a blue square"]}, {1: "", 2: "a blue square"})
    assert out["per_image"]["ROUGE-L"][1] == 0.0 and out["per_image"]["ROUGE-L"][2] == pytest.approx(1.0)


@pytest.mark.parametrize("refs, hyps, error, message", [
    ({2: ["a"]}, {1: "a"}, ValueError, r"1 hypothesis id\(s\) without references \[1\].*1 reference id.*\[2\]"),
    ({1: ["a"]}, {}, ValueError, r"hypotheses is empty"),
    ({1: ["a"], 2: []}, {1: "a", 2: "b"}, ValueError, r"references\[2\] is an empty list"),
    ({1: ["a", "  "]}, {1: "a"}, ValueError, r"references\[1\]\[1\] is an empty caption"),
    ({1: "a"}, {1: "a"}, TypeError, r"references\[1\] must be a list of str, got str"),
    ({1: ["a"]}, {1: ["a"]}, TypeError, r"hypotheses\[1\] must be one str caption, got list"),
    ({1: ["a", None]}, {1: "a"}, TypeError, r"references\[1\]\[1\] must be a str, got NoneType"),
    ([["a"]], {1: "a"}, TypeError, r"references must be a dict keyed by image id, got list"),
])
def test_bad_input_names_argument_id_and_problem(refs, hyps, error, message):
    with pytest.raises(error, match=message):
        caption_metrics(refs, hyps)


def test_bad_tokenizer_name():
    with pytest.raises(ValueError, match=r"tokenizer must be 'auto', 'ptb' or 'whitespace', got 'nltk'"):
        caption_metrics({1: ["a"]}, {1: "a"}, tokenizer="nltk")


def test_without_java_the_table_keeps_what_needs_no_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no `java`
    out = caption_metrics({1: ["a red circle"], 2: ["a blue square"]}, {1: "a red circle", 2: "a square"})
    assert out["tokenizer"].startswith("whitespace (PTB tokenisation needs Java")
    assert out["METEOR"] is None and out["SPICE"] is None
    assert metric_cell(out, "METEOR") == metric_cell(out, "SPICE") == "n/a (no Java)"
    assert out["not_available"]["METEOR"] == "no Java: `java` is not on PATH"
    assert out["BLEU-1"] > 0 and metric_cell(out, "BLEU-1") == out["BLEU-1"]
    with pytest.raises(RuntimeError, match="tokenizer='ptb' needs Java"):
        caption_metrics({1: ["a"]}, {1: "a"}, tokenizer="ptb")


@needs_java
def test_spice_never_downloads_and_says_why(monkeypatch, tmp_path):
    import urllib.request

    import pycocoevalcap.spice.get_stanford_models as fetch

    def no_network(*args, **kwargs):
        raise AssertionError("SPICE tried to download CoreNLP")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(fetch, "urlretrieve", no_network)
    monkeypatch.setattr(fetch, "get_stanford_models", no_network)
    monkeypatch.delenv(CORENLP_ENV, raising=False)
    classpath, why = captions.spice_classpath()
    if classpath is not None:
        pytest.skip("CoreNLP 3.6.0 is installed in pycocoevalcap's spice/lib on this machine")
    assert why.startswith("CoreNLP models not present: VSBENCH_CORENLP_DIR is not set")
    monkeypatch.setenv(CORENLP_ENV, str(tmp_path))
    out = caption_metrics({1: ["a red circle"]}, {1: "a red circle"}, meteor=False)
    assert metric_cell(out, "SPICE") == "n/a (CoreNLP models not present)"
    assert f"{CORENLP_ENV}={tmp_path} lacks stanford-corenlp-3.6.0.jar" in out["not_available"]["SPICE"]


@needs_java
def test_spice_reads_corenlp_from_the_named_folder_and_reports_a_failing_jar(monkeypatch, tmp_path):
    """Jars by the right names but not real ones: found in VSBENCH_CORENLP_DIR, put on the class path, the
    jar fails (class not found) and the table keeps every other metric with the reason."""
    for name in captions.CORENLP_JARS:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(CORENLP_ENV, str(tmp_path))
    classpath, why = captions.spice_classpath()
    assert why == "" and tmp_path / "stanford-corenlp-3.6.0-models.jar" in classpath
    out = caption_metrics({1: ["a red circle"]}, {1: "a red circle"}, meteor=False)
    assert metric_cell(out, "SPICE") == "n/a (SPICE failed)"
    assert "spice-1.0.jar exited with 1" in out["not_available"]["SPICE"]
    assert out["ROUGE-L"] == pytest.approx(1.0)


def test_spice_output_parsing():
    """The jar's JSON, as pycocoevalcap reads it: mean of scores.All.f over images; a missing F is NaN."""
    rows = [{"image_id": 1, "scores": {"All": {"f": 0.5, "pr": 1, "re": 0.33}}},
            {"image_id": 0, "scores": {"All": {"f": 0.25, "pr": 0.5, "re": 0.2}}}]
    assert captions.spice_from_output(rows, 2) == (0.375, [0.25, 0.5])
    mean, each = captions.spice_from_output([{"image_id": 0, "scores": {"All": {"f": None}}}], 1)
    assert math.isnan(mean) and math.isnan(each[0])


@needs_java
def test_ptb_tokenisation_lowercases_and_strips_punctuation_and_keeps_lines_aligned():
    """pycocoevalcap's PTBTokenizer replaces only '\\n'; Java also breaks lines at '\\r' and U+2028, which
    alone would shift every later caption by a line (measured: {1: ['a red'], 2: ['circle'], ...})."""
    refs = {1: ["a red circle"], 2: ["two blue squares"], 3: ["x y z"]}
    raw = caption_metrics(refs, {1: "A red\rCircle.", 2: "two\u2028blue, squares!", 3: "x y z"}, meteor=False,
                          spice=False, tokenizer="ptb")
    assert raw["tokenizer"].startswith("PTB")
    assert raw["per_image"]["ROUGE-L"] == pytest.approx({1: 1.0, 2: 1.0, 3: 1.0})


@needs_java
def test_meteor_runs_in_one_shared_process_and_ranks_captions():
    refs = {1: ["a cat sits on the mat", "the cat is on a mat"], 2: ["a dog near the red ball"]}
    good = caption_metrics(refs, {1: "a cat sits on the mat", 2: "a dog near the red ball"}, spice=False)
    process = captions._METEOR.scorer.meteor_p
    bad = caption_metrics(refs, {1: "red ball", 2: "the mat"}, spice=False)
    assert captions._METEOR.scorer.meteor_p is process  # the JVM started once
    assert 0 <= bad["METEOR"] < good["METEOR"] <= 1
    assert set(good["per_image"]["METEOR"]) == {1, 2}
    assert caption_metrics(refs, {1: "red ball", 2: "the mat"}, spice=False)["METEOR"] == bad["METEOR"]
    assert [m for m in METRICS if good[m] is None] == ["SPICE"] or captions.spice_classpath()[0] is not None
