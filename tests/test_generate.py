"""Generation: the four loops give the same greedy tokens (float64), the token-kind constraint holds
for every strategy, rows stop at EOS, sampling filters do what they say."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.pix2seq.generate import allowed_tokens, generate, select_next
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import Vocabulary
from reference.vision.vit import ViTConfig


def make_model(seed: int, max_len: int = 33) -> Pix2Seq:
    torch.manual_seed(seed)
    cfg = Pix2SeqConfig(encoder=ViTConfig(image_size=32, patch_size=16, dim=32, depth=1, heads=2), dim=32,
                        decoder_layers=2, decoder_heads=4, decoder_ff=64, num_bins=12, num_classes=3, max_len=max_len)
    model = Pix2Seq(cfg).double().eval()
    with torch.no_grad():  # larger output weights: varied, well-separated argmaxes instead of a constant row
        model.decoder.output.weight.mul_(4.0)
    return model


def images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, dtype=torch.double, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_tokens_identical_across_methods(seed):
    model, x = make_model(seed), images(4, seed)
    results = {m: generate(model, x, method=m, stop_at_eos=False, max_new_tokens=25)
               for m in ("port", "recompute", "cache")}
    tokens, probs = results["port"]
    assert tokens.shape == (4, 26) and (tokens[:, 0] == model.vocab.bos).all()
    for method in ("recompute", "cache"):
        assert torch.equal(results[method][0], tokens), method
        torch.testing.assert_close(results[method][1], probs, rtol=1e-9, atol=1e-12)
    assert len(set(tokens[:, 1:].flatten().tolist())) > 3  # not a degenerate constant sequence


@pytest.mark.parametrize("constrain", [False, True])
def test_cache_equals_recompute_with_eos_stop(constrain):
    model, x = make_model(3), images(5, 3)
    a = generate(model, x, method="recompute", constrain=constrain)
    b = generate(model, x, method="cache", constrain=constrain)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_probabilities_are_softmax_of_the_emitted_token():
    model, x = make_model(4), images(2, 4)
    tokens, probs = generate(model, x, stop_at_eos=False, max_new_tokens=6)
    with torch.no_grad():
        logits = model(x, tokens[:, :-1])  # (2, 6, V)
    expected = logits.softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(probs[:, 1:], expected.float(), rtol=1e-5, atol=1e-6)


@settings(max_examples=12)
@given(seed=st.integers(0, 1000), strategy=st.sampled_from(["greedy", "top_k", "top_p"]))
def test_constraint_makes_every_row_decodable(seed, strategy):
    model = make_model(seed % 5)
    tokens, probs = generate(model, images(3, seed), constrain=True, strategy=strategy, top_k=3, top_p=0.7,
                             generator=torch.Generator().manual_seed(seed))
    allowed = allowed_tokens(model.vocab, model.vocab.max_len)
    for row in tokens.tolist():
        end = row.index(model.vocab.eos)  # every row ends (a missing EOS raises here)
        assert all(allowed[pos, tok] for pos, tok in enumerate(row[1:end + 1], start=1)), row
        assert set(row[end + 1:]) <= {model.vocab.pad}
        assert (end - 1) // 5 <= model.vocab.max_objects and (end - 1) % 5 == 0
    assert ((probs[tokens != model.vocab.pad] > 0) & (probs <= 1)[tokens != model.vocab.pad]).all()


def test_allowed_tokens_by_hand():
    vocab = Vocabulary(num_bins=4, num_classes=2, max_len=12)  # bins 0-3, classes 4-5, BOS 6, EOS 7, PAD 8
    allowed = allowed_tokens(vocab, 12)
    as_sets = [set(torch.nonzero(row).flatten().tolist()) for row in allowed]
    assert as_sets[0] == set()  # BOS is given
    assert as_sets[1] == {0, 1, 2, 3, 7}  # object 1 or EOS
    assert as_sets[2] == as_sets[3] == as_sets[4] == {0, 1, 2, 3}
    assert as_sets[5] == {4, 5}
    assert as_sets[6] == {0, 1, 2, 3, 7}  # a second object fits: positions 6-10, EOS at 11
    assert as_sets[10] == {4, 5}
    assert as_sets[11] == {7}  # the last position: only EOS
    assert allowed_tokens(vocab, 11)[6].nonzero().flatten().tolist() == [7]  # no room for object 2 + EOS


def test_rows_stop_at_eos_and_are_padded():
    model, x = make_model(5), images(3, 5)
    with torch.no_grad():  # make EOS the argmax of every row at the first step
        model.decoder.output.bias[model.vocab.eos] = 1e3
    tokens, probs = generate(model, x, method="cache")
    assert tokens.tolist() == [[model.vocab.bos, model.vocab.eos]] * 3  # stopped after one step
    assert [d["boxes"].shape for d in postprocess_rows(model.vocab, tokens, probs, [(32, 32)] * 3)] == [(0, 4)] * 3


def test_finished_rows_get_pad_while_others_continue():
    model, x = make_model(6), images(6, 6)
    tokens, probs = generate(model, x, method="cache", constrain=True)
    eos_at = [row.index(model.vocab.eos) for row in tokens.tolist()]
    assert tokens.shape[1] == max(eos_at) + 1  # trimmed to the last EOS
    for row, end in zip(tokens.tolist(), eos_at):
        assert row[end + 1:] == [model.vocab.pad] * (len(row) - end - 1)
    assert (probs[tokens == model.vocab.pad] == 0).all()


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5))
def test_top_k_samples_only_among_the_k_largest(seed, k):
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(seed))
    token, prob = select_next(logits, "top_k", top_k=k, generator=torch.Generator().manual_seed(seed))
    top = logits.topk(k, dim=-1).indices
    assert (top == token[:, None]).any(-1).all()
    torch.testing.assert_close(prob, logits.softmax(-1).gather(-1, token[:, None]).squeeze(-1))


def test_top_1_and_tiny_top_p_are_greedy():
    logits = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    greedy = select_next(logits)[0]
    assert torch.equal(select_next(logits, "top_k", top_k=1)[0], greedy)
    assert torch.equal(select_next(logits, "top_p", top_p=1e-6)[0], greedy)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()  # p = 0.7: {0, 1} (0.5 < 0.7 <= 0.8)
    seen = {int(select_next(logits, "top_p", top_p=0.7, generator=torch.Generator().manual_seed(s))[0])
            for s in range(60)}
    assert seen == {0, 1}


def test_bad_arguments_are_rejected():
    model, x = make_model(0), images(1)
    with pytest.raises(ValueError, match="method"):
        generate(model, x, method="beam")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, x, max_new_tokens=model.vocab.max_len)
    with pytest.raises(ValueError, match="needs CUDA"):
        generate(model, x, method="graph")
    with pytest.raises(ValueError, match="strategy"):
        select_next(torch.zeros(1, 3), "beam")
    with pytest.raises(ValueError, match="top_p"):
        select_next(torch.zeros(1, 3), "top_p", top_p=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph decode needs a GPU")
def test_graph_method_matches_cache_on_cuda():
    model = make_model(7).float().cuda()
    x = images(4, 7).float().cuda()
    a = generate(model, x, method="cache", stop_at_eos=False, max_new_tokens=20)
    b = generate(model, x, method="graph", stop_at_eos=False, max_new_tokens=20)
    assert torch.equal(a[0], b[0])
