"""Caption metrics exactly as coco-caption (pycocoevalcap) computes them, on already-tokenised text
(tokens = str.split(); PTB tokenisation, which needs Java, is the caller's business).

BLEU-1..4 (`corpus_bleu`): clipped n-gram counts summed over the whole corpus, effective reference
length = the reference length closest to the hypothesis length (ties -> the shorter), and
coco-caption's epsilons instead of smoothing: p_k = (correct_k + 1e-15) / (guess_k + 1e-9) and the
brevity ratio (testlen + 1e-15) / (reflen + 1e-9). BLEU-n = (p_1 ... p_n) ** (1 / n) times the brevity
penalty. It is corpus-level: never the mean of per-sentence scores (`sentence_bleu` gives those, e.g.
for sample tables, and they differ).

Why our own ~40 lines and not sacrebleu: sacrebleu(tokenize="none", smooth_method="none") agrees only
on non-degenerate sets (~1e-11, DESIGN.md §5). Where a hypothesis set has no matching 4-gram it gives
BLEU-4 = 0 while coco-caption gives (1e-15 / guess) ** (1/4) * ... (about 1e-4, visible in a report),
and at testlen == reflen coco-caption still applies a brevity penalty of exp(-~1e-9 / reflen).
pycocoevalcap is only a test extra, so tests/test_bleu.py checks parity with its scorer instead.

CIDEr-D (`corpus_cider`): pycocoevalcap's Cider (which is CIDEr-D: sigma 6 length penalty, clipped
tf-idf, x10), idf over the evaluated set's references, including its quirk that the "length" in the
Gaussian penalty is the number of bigrams.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Mapping, Sequence

import numpy as np

__all__ = ["corpus_bleu", "sentence_bleu", "corpus_cider", "cider_per_image"]

_TINY = 1e-15  # coco-caption: so that a zero count still gives a (tiny) positive precision
_SMALL = 1e-9  # coco-caption: avoids division by zero


def _ngrams(sentence: str, n: int) -> tuple[int, dict[tuple[str, ...], int]]:
    """(number of tokens, n-gram -> count for orders 1..n) of a whitespace-tokenised sentence."""
    words = sentence.split()
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return len(words), counts


def _bleu_counts(hypothesis: str, references: Sequence[str], n: int) -> tuple[int, int, list[int], list[int]]:
    """(testlen, closest reflen, guess[k], correct[k]) of one hypothesis, k = 0..n-1 (order k+1)."""
    ref_lens, max_counts = [], {}
    for ref in references:
        length, counts = _ngrams(ref, n)
        ref_lens.append(length)
        for gram, c in counts.items():
            max_counts[gram] = max(max_counts.get(gram, 0), c)
    testlen, counts = _ngrams(hypothesis, n)
    reflen = min((abs(length - testlen), length) for length in ref_lens)[1]  # closest, ties -> shorter
    guess = [max(0, testlen - k) for k in range(n)]
    correct = [0] * n
    for gram, c in counts.items():
        correct[len(gram) - 1] += min(max_counts.get(gram, 0), c)  # clipped counts
    return testlen, reflen, guess, correct


def _bleu_from_counts(testlen: float, reflen: float, guess: Sequence[int], correct: Sequence[int]) -> list[float]:
    """BLEU-1..n from (summed) counts, with coco-caption's epsilons and brevity penalty."""
    scores, product = [], 1.0
    for k in range(len(guess)):
        product *= float(correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _check(hypotheses: Mapping, references: Mapping, max_n: int | None = None) -> list[Hashable]:
    """Validated ids (in the hypotheses' order); ValueError naming the offending id otherwise."""
    if max_n is not None and (isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1):
        raise ValueError(f"max_n must be a positive int, got {max_n!r}")
    if not isinstance(hypotheses, Mapping) or not isinstance(references, Mapping):
        raise ValueError("hypotheses and references must be dicts keyed by image id")
    if not hypotheses:
        raise ValueError("no hypotheses: BLEU of an empty corpus is undefined")
    no_ref = [i for i in hypotheses if i not in references]
    no_hyp = [i for i in references if i not in hypotheses]
    if no_ref or no_hyp:
        raise ValueError(f"ids differ: {len(no_ref)} hypothesis id(s) without references {no_ref[:8]!r}, "
                         f"{len(no_hyp)} reference id(s) without a hypothesis {no_hyp[:8]!r}")
    for i, hyp in hypotheses.items():
        if not isinstance(hyp, str):
            raise ValueError(f"hypothesis of id {i!r} must be a str, got {type(hyp).__name__}")
        refs = references[i]
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValueError(f"references of id {i!r} must be a list of str, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"references of id {i!r} are an empty list")
        if not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references of id {i!r} must all be str")
    return list(hypotheses)


def corpus_bleu(hypotheses: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                max_n: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..max_n as coco-caption: {"BLEU-1": ..., ..., f"BLEU-{max_n}": ...}.

    hypotheses: image id -> one tokenised caption; references: image id -> its tokenised captions."""
    ids = _check(hypotheses, references, max_n)
    testlen = reflen = 0
    guess, correct = [0] * max_n, [0] * max_n
    for i in ids:
        t, r, g, c = _bleu_counts(hypotheses[i], references[i], max_n)
        testlen, reflen = testlen + t, reflen + r
        guess = [a + b for a, b in zip(guess, g)]
        correct = [a + b for a, b in zip(correct, c)]
    scores = _bleu_from_counts(testlen, reflen, guess, correct)
    return {f"BLEU-{k + 1}": s for k, s in enumerate(scores)}


def sentence_bleu(hypothesis: str, references: Sequence[str], max_n: int = 4) -> dict[str, float]:
    """One sentence's BLEU-1..max_n as coco-caption's per-image list (for sample tables only; the mean
    of these is NOT corpus BLEU)."""
    return corpus_bleu({0: hypothesis}, {0: references}, max_n)


def _tfidf(counts: Mapping[tuple[str, ...], int], doc_freq: Mapping, log_num_docs: float, n: int):
    """(per-order tf-idf dicts, per-order norms, 'length' = number of bigrams, as coco-caption)."""
    vec = [defaultdict(float) for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for gram, tf in counts.items():
        k = len(gram) - 1
        vec[k][gram] = float(tf) * (log_num_docs - np.log(max(1.0, doc_freq.get(gram, 0.0))))
        norm[k] += vec[k][gram] ** 2
        if k == 1:
            length += tf
    return vec, [np.sqrt(x) for x in norm], length


def cider_per_image(hypotheses: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                    n: int = 4, sigma: float = 6.0) -> dict[Hashable, float]:
    """Per-image CIDEr-D as pycocoevalcap's Cider (idf from the references of this set)."""
    ids = _check(hypotheses, references, n)
    refs = {i: [_ngrams(r, n)[1] for r in references[i]] for i in ids}
    doc_freq: dict[tuple[str, ...], float] = defaultdict(float)
    for i in ids:
        for gram in {g for counts in refs[i] for g in counts}:
            doc_freq[gram] += 1
    log_num_docs = np.log(float(len(ids)))
    out = {}
    for i in ids:
        vec, norm, length = _tfidf(_ngrams(hypotheses[i], n)[1], doc_freq, log_num_docs, n)
        score = np.zeros(n)
        for ref_counts in refs[i]:
            vec_r, norm_r, length_r = _tfidf(ref_counts, doc_freq, log_num_docs, n)
            penalty = np.e ** (-(float(length - length_r) ** 2) / (2 * sigma ** 2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec[k].items())
                if norm[k] != 0 and norm_r[k] != 0:
                    val /= norm[k] * norm_r[k]
                score[k] += val * penalty
        out[i] = float(np.mean(score)) / len(refs[i]) * 10.0
    return out


def corpus_cider(hypotheses: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                 n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D of the set: the mean of `cider_per_image` (the metric is defined that way)."""
    return float(np.mean(list(cider_per_image(hypotheses, references, n, sigma).values())))
