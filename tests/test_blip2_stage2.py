"""BLIP-2 stage 2 pieces: the hard-negative share of the ITM sampler, its schedule, generic decoding
(beam search is exact when the beams cover every sequence), and the stage-2 training round trip with the
frozen LM bit-identical."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip2.decoding import beam_search, greedy
from reference.blip2.sampler import negative_weights, sample_negatives


def test_hard_share_zero_is_uniform_over_negatives_and_one_is_the_softmax():
    sim = torch.tensor([[5.0, 1.0, 0.0, -1.0], [0.0, 0.0, 9.0, 0.0]])
    positives = torch.tensor([[True, False, False, False], [False, False, True, True]])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_negatives(sim, positives, gen, hard=0.0) for _ in range(3000)])  # (3000, 2)
    for row, allowed in ((0, [1, 2, 3]), (1, [0, 1])):
        counts = torch.bincount(draws[:, row], minlength=4).float() / 3000
        assert set(draws[:, row].unique().tolist()) == set(allowed)
        assert torch.allclose(counts[allowed], torch.full((len(allowed),), 1 / len(allowed)), atol=0.04)
    hard = torch.stack([sample_negatives(sim, positives, gen, hard=1.0) for _ in range(3000)])
    want = negative_weights(sim, positives)[0]
    assert torch.allclose(torch.bincount(hard[:, 0], minlength=4).float() / 3000, want, atol=0.04)
    with pytest.raises(ValueError, match="hard=1.5"):
        sample_negatives(sim, positives, gen, hard=1.5)


def test_hard_share_one_draws_exactly_what_the_old_sampler_drew():
    sim, positives = torch.randn(6, 6), torch.eye(6, dtype=torch.bool)
    a = sample_negatives(sim, positives, torch.Generator().manual_seed(3))
    b = sample_negatives(sim, positives, torch.Generator().manual_seed(3), hard=1.0)
    weights = negative_weights(sim, positives)
    c = torch.multinomial(weights, 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_hard_share_schedule_by_hand():
    from bench.training.qformer import TrainConfig, hard_share

    cfg = TrainConfig(itm_hard=1.0, itm_hard_start=0.0, itm_hard_warmup=100)
    assert [hard_share(s, cfg) for s in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0]
    cfg = TrainConfig(itm_hard=0.5, itm_hard_start=1.0, itm_hard_warmup=10)
    assert hard_share(5, cfg) == pytest.approx(0.75) and hard_share(10, cfg) == 0.5
    assert hard_share(0, TrainConfig()) == 1.0  # the default: hard negatives throughout (the paper)


def table_step(table):
    """A step whose log-probabilities depend on the last token only: table (V, V)."""
    def step(tokens, state):
        return table[tokens[:, -1]].clone(), state
    return step


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), min_length=st.integers(0, 2))
def test_beam_search_with_enough_beams_is_exhaustive(seed, min_length):
    V, L, end, pad = 4, 3, 3, 0
    table = torch.log_softmax(torch.randn(V, V, generator=torch.Generator().manual_seed(seed)) * 2, dim=1)
    best, best_score = None, -math.inf
    for n in range(1, L + 1):
        for seq in itertools.product(range(V), repeat=n):
            ends = [i for i, t in enumerate(seq) if t == end]
            if (ends and ends != [n - 1]) or (ends and n - 1 < min_length):
                continue  # end only last, and not before min_length
            if not ends and n < L:
                continue  # an unfinished sequence must use the whole length
            score, last = 0.0, 1
            for t in seq:
                score += float(table[last, t])
                last = t
            if score / n > best_score:
                best, best_score = list(seq), score / n
    beams = V ** L
    out = beam_search(table_step(table), lambda s, r: s, None, torch.ones(beams, 1, dtype=torch.long), beams, L,
                      min_length, end, pad)
    got = [t for t in out[0].tolist()][: len(best)]
    assert got == best


def test_greedy_takes_the_argmax_and_pads_after_the_end():
    table = torch.full((4, 4), -10.0)
    table[1, 2] = table[2, 3] = table[3, 1] = 0.0  # 1 -> 2 -> 3 (end)
    out = greedy(table_step(table), None, torch.tensor([[1], [1]]), 5, 0, 3, 0)
    assert out.tolist() == [[2, 3], [2, 3]]
    out = greedy(table_step(table), None, torch.tensor([[1], [3]]), 5, 0, 3, 0)
    assert out.tolist() == [[2, 3, 0], [1, 2, 3]]
    table[1, 3] = -0.5  # end is second best after 1: min_length forbids it first
    assert greedy(table_step(table), None, torch.tensor([[3]]), 5, 2, 3, 0).tolist() == [[1, 2, 3]]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from bench.datasets.synthetic import SyntheticConfig, generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("shapes"), SyntheticConfig(num_train=12, num_val=4))


def test_stage2_training_round_trip_keeps_the_lm_bit_identical(tiny_dataset, tmp_path):
    from bench.training.qformer import TrainConfig, train
    from bench.training.stage2 import LMTrainConfig, Stage2TrainConfig, load_lm, load_stage2, train_lm, train_stage2
    from reference.blip2.image_encoder import PatchEncoderConfig
    from reference.blip2.stage2 import tensor_digest

    stage1 = tmp_path / "q.safetensors"
    train(TrainConfig(steps=2, batch_size=4, hidden_size=32, num_layers=2, intermediate_size=48, num_query_tokens=4,
                      embed_dim=16, encoder=PatchEncoderConfig(width=32)), out=stage1, log_every=0, dataset=tiny_dataset)
    lm_path = tmp_path / "lm.safetensors"
    lm_meta = train_lm(LMTrainConfig(steps=3, batch_size=8, hidden_size=32, num_layers=1), out=lm_path,
                       dataset=tiny_dataset, log_every=0)
    lm, _, _ = load_lm(lm_path)
    assert tensor_digest(lm) == lm_meta["lm_digest"]
    out = tmp_path / "s2.safetensors"
    meta = train_stage2(Stage2TrainConfig(steps=3, batch_size=4), lm_path, stage1, out=out, dataset=tiny_dataset,
                        log_every=0)
    assert meta["lm"]["digest_before"] == meta["lm"]["digest_after"] == lm_meta["lm_digest"]
    assert meta["trainable_parameters"] > 0 and meta["frozen_parameters"] == sum(p.numel() for p in lm.parameters())
    model, encoder, tokenizer, _ = load_stage2(out)
    assert tensor_digest(model.lm) == lm_meta["lm_digest"]
    assert not any(p.requires_grad for p in model.lm.parameters())
    stage1_q = load_checkpoint_qformer(stage1)
    assert any(not torch.equal(a, b) for a, b in zip(stage1_q.parameters(), model.qformer.parameters()))
    feats = encoder(torch.zeros(2, 128, 128, 3, dtype=torch.uint8))
    again = load_stage2(out)[0]
    a = model.generate(feats, num_beams=2, max_length=5, min_length=1)
    assert torch.equal(a, again.generate(feats, num_beams=2, max_length=5, min_length=1))
    assert all(isinstance(tokenizer.decode(r), str) for r in a.tolist())


def load_checkpoint_qformer(path):
    from bench.training.qformer import load_checkpoint

    return load_checkpoint(path)[0].qformer


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), per_doc=st.integers(1, 4))
def test_lm_documents_are_distinct_captions_of_one_image(seed, per_doc):
    from bench.training.stage2 import documents
    from reference.blip2.tokenizer import WordTokenizer

    captions = [["a red circle", "there is a circle", "one red shape"], ["a blue square on the left", "two shapes"]]
    tok = WordTokenizer.from_texts(c for caps in captions for c in caps)
    rows = [0, 1, 0, 1]
    ids, mask = documents(captions, rows, tok, 22, per_doc, 72, torch.Generator().manual_seed(seed))
    assert torch.equal(mask, (ids != tok.pad_id).long())
    for row, r in zip(ids.tolist(), rows):
        words = [tok.vocab[i] for i in row if i != tok.pad_id]
        text = " ".join(words).replace("[CLS] ", "").split(" [SEP]")[:-1]
        texts = [t.strip() for t in text]
        assert words[0] == "[CLS]" and words[-1] == "[SEP]"
        assert 1 <= len(texts) <= min(per_doc, len(captions[r])) and len(set(texts)) == len(texts)
        assert set(texts) <= set(captions[r])
