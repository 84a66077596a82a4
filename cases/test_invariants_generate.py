"""The generation loop (`generate`), driven by a scripted stand-in model that sets every step's
distribution (cases/standin.py): an object's score is its class token's probability, EOS ends a row
(only PAD after it), each position holds only a token of the kind it allows, a row does not depend on
the rest of the batch, the length limit holds. Only `generate` is tested: its rows are read here."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.standin import ScriptedModel, plan_of, spread

pytestmark = pytest.mark.pix2seq


def vocab_size(api) -> int:
    return api.num_bins + api.num_classes + 3


@st.composite
def detection_plan(draw, api, min_objects=0, max_objects=5):
    """(tokens of one row after BOS, their probabilities): k objects then EOS, each token the top choice."""
    k = draw(st.integers(min_objects, min(max_objects, (api.max_len - 2) // 5)))
    tokens = []
    for _ in range(k):
        tokens += [draw(st.integers(0, api.num_bins - 1)) for _ in range(4)]
        tokens.append(api.num_bins + draw(st.integers(0, api.num_classes - 1)))
    tokens.append(api.eos)
    probs = [draw(st.floats(0.55, 0.99)) for _ in tokens]
    return tokens, probs


def alternatives(api, tokens):
    """Same-kind alternatives of each planned token (so that a kind constraint changes nothing)."""
    coords, classes = [0, api.num_bins // 2, api.num_bins - 1], [api.num_bins + c for c in range(min(api.num_classes, 3))]
    return lambda i: classes if api.num_bins <= tokens[i] < api.eos else coords


def scripted(api, plans, after=None):
    model = ScriptedModel(vocab_size(api), {k: plan_of(t, p, alternatives(api, t)) for k, (t, p) in plans.items()},
                          prompt_length=1, after=after, eos=api.eos)
    return model, model.images(sorted(plans))


def first_eos(row, eos) -> int:
    hits = np.flatnonzero(np.asarray(row) == eos)
    return int(hits[0]) if hits.size else -1


@pytest.mark.case(stands_for="an object's score is its class token's probability (the port kept the top "
                  "probability of every 4th step instead)", stage="generate")
@given(data=st.data())
def test_score_is_the_class_token_probability(api, data):
    plans = {k: data.draw(detection_plan(api, min_objects=1), label=f"row {k}") for k in range(data.draw(st.integers(1, 4)))}
    model, images = scripted(api, plans)
    tokens, probs = api.generate(model, images)
    tokens, probs = np.asarray(tokens), np.asarray(probs, np.float64)
    for b, (planned, planned_probs) in plans.items():
        n = len(planned)
        assert tokens[b, 1:1 + n].tolist() == planned, f"row {b}: {tokens[b, :1 + n].tolist()}"
        classes = 5 * np.arange((n - 1) // 5) + 4  # class slots, counted after BOS
        np.testing.assert_allclose(probs[b, 1 + classes], np.asarray(planned_probs)[classes], rtol=1e-5,
                                   err_msg=f"row {b}: scores of its {len(classes)} objects")


@pytest.mark.case(stands_for="EOS ends a row: only PAD follows it, while the other rows go on (the port "
                  "kept generating after EOS)", stage="generate")
@given(data=st.data())
def test_eos_ends_a_row_and_only_that_row(api, data):
    plans = {k: data.draw(detection_plan(api), label=f"row {k}") for k in range(data.draw(st.integers(2, 4)))}
    after = spread(api.num_bins // 3, 0.9, [1, 2])  # past its script a row "wants" more coordinates
    model, images = scripted(api, plans, after=after)
    tokens = np.asarray(api.generate(model, images)[0])
    for b, (planned, _) in plans.items():
        end = first_eos(tokens[b], api.eos)
        assert end == len(planned), f"row {b}: first EOS at {end}, its script ends at {len(planned)}"
        assert tokens[b, 1:end + 1].tolist() == planned
        assert np.all(tokens[b, end + 1:] == api.pad), f"row {b} after EOS: {tokens[b, end + 1:end + 8].tolist()}"


def kinds_ok(api, row) -> str:
    """'' when the row is BOS, whole objects (4 coordinates, a class), then EOS; else the problem."""
    end = first_eos(row, api.eos)
    if end < 0:
        return "no EOS"
    if (end - 1) % 5:
        return f"EOS at {end}, not at an object boundary"
    body = np.asarray(row[1:end]).reshape(-1, 5)
    if not ((body[:, :4] >= 0) & (body[:, :4] < api.num_bins)).all():
        return f"a non-coordinate in a coordinate slot: {body.tolist()}"
    if not ((body[:, 4] >= api.num_bins) & (body[:, 4] < api.num_bins + api.num_classes)).all():
        return f"a non-class in a class slot: {body.tolist()}"
    return ""  # what follows EOS is the EOS case's business


@pytest.mark.case(stands_for="each position holds only a token of the kind it allows (coordinates, class, "
                  "EOS at an object boundary) even where the model prefers another (the port did not "
                  "constrain)", stage="generate")
@given(data=st.data())
def test_each_position_holds_a_token_of_its_kind(api, data):
    wrong_tokens = [api.bos, api.pad, api.eos, api.num_bins, 1]
    plans, scripts = {}, {}
    for k in range(data.draw(st.integers(1, 3))):
        tokens, probs = data.draw(detection_plan(api, min_objects=1), label=f"row {k}")
        steps = plan_of(tokens, probs, alternatives(api, tokens))
        for i in data.draw(st.lists(st.integers(0, len(tokens) - 2), min_size=1, max_size=4, unique=True)):
            slot, right = i % 5, tokens[i]
            kind = (lambda t: t < api.num_bins) if slot < 4 else (lambda t: api.num_bins <= t < api.bos)
            wrong = data.draw(st.sampled_from([t for t in wrong_tokens if not kind(t) and not (slot == 0 and t == api.eos)]),
                              label="preferred wrong token")
            steps[i] = {wrong: 0.6, right: 0.3, **{t: 0.1 / 3 for t in alternatives(api, tokens)(i) if t != right}}
        plans[k], scripts[k] = (tokens, probs), steps
    model = ScriptedModel(vocab_size(api), scripts, prompt_length=1, eos=api.eos)
    tokens = np.asarray(api.generate(model, model.images(sorted(plans)))[0])
    for b in plans:
        problem = kinds_ok(api, tokens[b].tolist())
        assert not problem, f"row {b}: {problem}"


@pytest.mark.case(stands_for="a row does not depend on the rest of the batch", stage="generate")
@settings(max_examples=25)
@given(data=st.data())
def test_rows_do_not_depend_on_the_batch(api, data):
    plans = {k: data.draw(detection_plan(api), label=f"row {k}") for k in range(data.draw(st.integers(2, 4)))}
    model, images = scripted(api, plans)
    tokens, probs = (np.asarray(x) for x in api.generate(model, images))
    for b in plans:
        alone_t, alone_p = (np.asarray(x) for x in api.generate(model, images[b:b + 1]))
        end = first_eos(alone_t[0], api.eos)
        assert end > 0 and first_eos(tokens[b], api.eos) == end
        assert tokens[b, :end + 1].tolist() == alone_t[0, :end + 1].tolist()
        np.testing.assert_allclose(np.asarray(probs[b, :end + 1], np.float64), np.asarray(alone_p[0, :end + 1], np.float64),
                                   rtol=1e-6)


@pytest.mark.case(stands_for="generation respects the length limit (max_new_tokens, never past max_len) "
                  "when the model never emits EOS", stage="generate")
@settings(max_examples=10)
@given(data=st.data())
def test_length_limit_is_respected(api, data):
    limit = data.draw(st.one_of(st.integers(1, 12), st.just(api.max_len - 1)), label="max_new_tokens")
    model = ScriptedModel(vocab_size(api), {0: [], 1: []}, prompt_length=1,
                          after=spread(2, 0.8, [3, api.num_bins, api.num_bins + api.num_classes - 1]))
    tokens, probs = api.generate(model, model.images([0, 1]), max_new_tokens=limit)
    assert tuple(np.asarray(tokens).shape)[1] <= min(1 + limit, api.max_len)
    assert np.asarray(probs).shape == np.asarray(tokens).shape
    assert np.all(np.asarray(tokens)[:, 0] == api.bos)
