"""Prompted generation of every Pix2SeqV2 task (`generate_task`), driven by a scripted stand-in model that sets
every step's distribution (cases/standin.py): the rows follow the script, detection scores are the class
tokens' probabilities, each position holds only a token of the kind the task allows there (keypoints:
exactly 2K coordinates or invisible tokens, then EOS), EOS ends a row, a row does not depend on the rest
of the batch, the length limit holds. Prompts are made by the reference; only `generate_task` is tested."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cases.standin import ScriptedModel, plan_of
from cases.strategies_v2 import ids, ref  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2
TASKS = ("detection", "segmentation", "keypoint", "captioning")
WORDS = 20  # the stand-in's caption words: ids word_start .. word_start + 19


def kinds(ids):
    nb, nc = ids["num_bins"], ids["num_classes"]
    return {"coord": [0, nb // 2, nb - 1], "class": [nb + c for c in range(min(nc, 3))],
            "word": [ids["word_start"] + w for w in (0, 5, WORDS - 1)]}


@st.composite
def task_plan(draw, ids, task, num_keypoints=5, min_objects=0):
    """(tokens after the prompt, probabilities, kind of each token) of one row, EOS last."""
    nb = ids["num_bins"]
    coord = st.integers(0, nb - 1)
    if task == "detection":
        body, kind = [], []
        for _ in range(draw(st.integers(min_objects, 4))):
            body += [draw(coord) for _ in range(4)] + [nb + draw(st.integers(0, ids["num_classes"] - 1))]
            kind += ["coord"] * 4 + ["class"]
    elif task == "segmentation":
        body = []
        for p in range(draw(st.integers(1, 3))):
            body += ([ids["separator"]] if p else []) + [draw(coord) for _ in range(2 * draw(st.integers(3, 6)))]
        kind = ["coord"] * len(body)
    elif task == "keypoint":
        body = []
        for _ in range(num_keypoints):
            body += [ids["invisible"]] * 2 if draw(st.booleans()) and draw(st.booleans()) else [draw(coord), draw(coord)]
        kind = ["coord"] * len(body)
    else:
        body = [ids["word_start"] + draw(st.integers(0, WORDS - 1)) for _ in range(draw(st.integers(0, 10)))]
        kind = ["word"] * len(body)
    tokens = body + [ids["eos"]]
    return tokens, [draw(st.floats(0.55, 0.99)) for _ in tokens], kind + ["coord" if task != "captioning" else "word"]


def prompts_for(ref, ids, task, rows):
    side = ids["num_bins"] - 1
    prompt = ref.prompt(task, [1, 2, side // 2, side - 3], 0, side, side)
    return np.array([prompt] * rows, np.int64), side


def script(ids, plans, prompt_length, after=None):
    alts = kinds(ids)
    steps = {k: plan_of(t, p, lambda i, kind=kd: alts[kind[i]]) for k, (t, p, kd) in plans.items()}
    return ScriptedModel(ids["word_start"] + WORDS, steps, prompt_length, after=after, eos=ids["eos"])


def run(api, model, keys, task, prompts, **kw):
    import torch

    tokens, probs = api.generate_task(model, model.images(keys), task, torch.as_tensor(prompts), **kw)
    return np.asarray(tokens), np.asarray(probs, np.float64)


def scripted_batch(api, ids, ref, data, task, min_rows):
    """A drawn batch of min_rows..3 scripted rows of `task`, generated -> (plans, prompts, model, tokens, probs)."""
    plans = {k: data.draw(task_plan(ids, task), label=f"row {k}") for k in range(data.draw(st.integers(min_rows, 3)))}
    prompts, _ = prompts_for(ref, ids, task, len(plans))
    model = script(ids, plans, prompts.shape[1])
    return (plans, prompts, model, *run(api, model, sorted(plans), task, prompts, num_keypoints=5))


@pytest.mark.case(stands_for="generation follows the model: each row is its scripted tokens, then EOS",
                  stage="generate_task")
@pytest.mark.parametrize("task", TASKS)
@given(data=st.data())
@settings(max_examples=20)
def test_rows_follow_the_script(api, ids, ref, task, data):
    plans, prompts, model, tokens, probs = scripted_batch(api, ids, ref, data, task, 1)
    P = prompts.shape[1]
    for b, (planned, planned_probs, _) in plans.items():
        assert tokens[b, :P].tolist() == prompts[b].tolist()
        assert tokens[b, P:P + len(planned)].tolist() == planned, f"row {b}: {tokens[b, P:P + len(planned) + 2].tolist()}"
        n = len(planned) - (task == "keypoint")  # after 2K keypoint tokens EOS is the only choice: probability 1
        np.testing.assert_allclose(probs[b, P:P + n], planned_probs[:n], rtol=1e-5)


@pytest.mark.case(stands_for="a detection's score is its class token's probability (a public Pix2SeqV2 kept "
                  "the top probability of every 4th step)", stage="generate_task")
@given(data=st.data())
@settings(max_examples=25)
def test_detection_score_is_the_class_token_probability(api, ids, ref, data):
    plans = {k: data.draw(task_plan(ids, "detection", min_objects=1), label=f"row {k}")
             for k in range(data.draw(st.integers(1, 3)))}
    prompts, _ = prompts_for(ref, ids, "detection", len(plans))
    tokens, probs = run(api, script(ids, plans, 1), sorted(plans), "detection", prompts)
    for b, (planned, planned_probs, _) in plans.items():
        classes = 5 * np.arange((len(planned) - 1) // 5) + 4  # class slots, counted after the task token
        assert tokens[b, 1 + classes].tolist() == np.asarray(planned)[classes].tolist()
        np.testing.assert_allclose(probs[b, 1 + classes], np.asarray(planned_probs)[classes], rtol=1e-5,
                                   err_msg=f"row {b}: scores of its {len(classes)} objects")


def kind_problem(ids, task, row, P, num_keypoints) -> str:
    nb = ids["num_bins"]
    row = [int(t) for t in row]
    if ids["eos"] not in row[P:]:
        return "no EOS"
    body = row[P:row.index(ids["eos"], P)]
    if task == "detection":
        ok = len(body) % 5 == 0 and all((t < nb) if i % 5 < 4 else (nb <= t < nb + ids["num_classes"])
                                        for i, t in enumerate(body))
    elif task == "segmentation":
        ok = all(t < nb or t == ids["separator"] for t in body)
    elif task == "keypoint":
        ok = len(body) == 2 * num_keypoints and all(t < nb or t == ids["invisible"] for t in body)
    else:
        ok = all(t >= ids["word_start"] for t in body)
    return "" if ok else f"body {body}"


@pytest.mark.case(stands_for="each position holds only a token of the kind the task allows there, even where "
                  "the model prefers another (keypoints: exactly 2K coordinates or invisible tokens, then EOS)",
                  stage="generate_task")
@pytest.mark.parametrize("task", TASKS)
@given(data=st.data())
@settings(max_examples=20)
def test_each_position_holds_a_token_of_its_kind(api, ids, ref, task, data):
    alts = kinds(ids)
    wrong = {"detection": [ids["bos"], ids["pad"], ids["separator"], ids["word_start"]],
             "segmentation": [ids["num_bins"], ids["invisible"], ids["word_start"], ids["keypoint"]],
             "keypoint": [ids["num_bins"], ids["separator"], ids["word_start"], ids["eos"]],
             "captioning": [0, ids["num_bins"], ids["separator"], ids["pad"]]}[task]
    scripts = {}
    for k in range(data.draw(st.integers(1, 3))):
        tokens, probs, kind = data.draw(task_plan(ids, task, num_keypoints=5), label=f"row {k}")
        steps = plan_of(tokens, probs, lambda i: alts[kind[i]])
        for i in data.draw(st.lists(st.integers(0, len(tokens) - 1), min_size=1, max_size=4, unique=True)):
            preferred = data.draw(st.sampled_from(wrong), label="preferred wrong token")
            steps[i] = {preferred: 0.6, tokens[i]: 0.3, **{t: 0.1 / 3 for t in alts[kind[i]] if t != tokens[i]}}
        if task == "keypoint":  # past its 2K tokens the model wants one more coordinate
            steps.append({1: 0.7, ids["eos"]: 0.3})
        scripts[k] = steps
    prompts, _ = prompts_for(ref, ids, task, len(scripts))
    model = ScriptedModel(ids["word_start"] + WORDS, scripts, prompts.shape[1], eos=ids["eos"])
    tokens, _ = run(api, model, sorted(scripts), task, prompts, num_keypoints=5)
    for b in scripts:
        problem = kind_problem(ids, task, tokens[b], prompts.shape[1], 5)
        assert not problem, f"row {b}: {problem}"


@pytest.mark.case(stands_for="EOS ends a row: only PAD follows it, while the other rows go on", stage="generate_task")
@pytest.mark.parametrize("task", TASKS)
@given(data=st.data())
@settings(max_examples=15)
def test_eos_ends_a_row(api, ids, ref, task, data):
    plans = {k: data.draw(task_plan(ids, task), label=f"row {k}") for k in range(data.draw(st.integers(2, 3)))}
    prompts, _ = prompts_for(ref, ids, task, len(plans))
    after = {ids["word_start"] + 1: 0.6, 2: 0.4}  # past its script a row "wants" to go on
    tokens, _ = run(api, script(ids, plans, prompts.shape[1], after=after), sorted(plans), task, prompts, num_keypoints=5)
    P = prompts.shape[1]
    for b, (planned, _, _) in plans.items():
        end = P + len(planned) - 1
        assert tokens[b, end] == ids["eos"] and tokens[b, P:end + 1].tolist() == planned
        assert np.all(tokens[b, end + 1:] == ids["pad"]), f"row {b} after EOS: {tokens[b, end + 1:end + 6].tolist()}"


@pytest.mark.case(stands_for="a row does not depend on the rest of the batch", stage="generate_task")
@pytest.mark.parametrize("task", TASKS)
@given(data=st.data())
@settings(max_examples=10)
def test_rows_do_not_depend_on_the_batch(api, ids, ref, task, data):
    plans, prompts, model, tokens, probs = scripted_batch(api, ids, ref, data, task, 2)
    P = prompts.shape[1]
    for b, (planned, _, _) in plans.items():
        alone_t, alone_p = run(api, model, [b], task, prompts[b:b + 1], num_keypoints=5)
        end = P + len(planned)
        assert tokens[b, :end].tolist() == alone_t[0, :end].tolist()
        np.testing.assert_allclose(probs[b, :end], alone_p[0, :end], rtol=1e-6)


@pytest.mark.case(stands_for="generation respects the length limit (max_new_tokens, never past max_len)",
                  stage="generate_task")
@pytest.mark.parametrize("task", ["detection", "segmentation", "captioning"])
@pytest.mark.parametrize("limit", [3, None])
def test_length_limit_is_respected(api, ids, ref, task, limit):
    prompts, _ = prompts_for(ref, ids, task, 2)
    after = {2: 0.5, ids["word_start"] + 3: 0.3, ids["num_bins"]: 0.2}  # never EOS
    model = ScriptedModel(ids["word_start"] + WORDS, {0: [], 1: []}, prompts.shape[1], after=after)
    tokens, probs = run(api, model, [0, 1], task, prompts, max_new_tokens=limit)
    P = prompts.shape[1]
    assert tokens.shape[1] <= (P + limit if limit else ids["max_len"])
    assert probs.shape == tokens.shape and tokens[:, :P].tolist() == prompts.tolist()
