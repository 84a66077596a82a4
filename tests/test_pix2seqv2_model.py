"""Pix2SeqV2 model, prompted KV-cached generation, constraints, inference and checkpoints."""

import numpy as np
import pytest
import torch

from reference.pix2seqv2 import WordList
from reference.pix2seqv2.generate import allowed_tokens, generate_from_prompts
from reference.pix2seqv2.inference import InferenceOptions, infer_all
from reference.pix2seqv2.model import Pix2SeqV2Config, build_model, load_v2_checkpoint, save_v2_checkpoint
from reference.pix2seqv2.prompt import task_prompt

WORDS = WordList(("<unk>", "a", "red", "circle", "square"))


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = Pix2SeqV2Config.tiny(num_words=len(WORDS), decoder_layers=1, dropout=0.0, pos_dropout=0.0, **overrides)
    cfg.encoder.depth = 1
    return build_model(cfg).eval()


def test_model_covers_the_task_vocabulary():
    model = tiny_model()
    v = model.vocab
    assert model.decoder.output.out_features == v.size == v.word_start + len(WORDS)
    assert v.task_token("keypoint") < v.invisible < v.separator < v.word_start
    with pytest.raises(ValueError, match="invisible_offset"):
        build_model(Pix2SeqV2Config.tiny(invisible_offset=2))


def full_recompute_greedy(model, features, prompts, steps, allowed):
    tokens = prompts.clone()
    for _ in range(steps):
        logits = model.decoder(features, tokens)[:, -1].masked_fill(~allowed[tokens.shape[1]], float("-inf"))
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], 1)
    return tokens


@pytest.mark.parametrize("task", ["detection", "segmentation", "keypoint", "captioning"])
def test_cached_generation_equals_full_recompute(task):
    model = tiny_model(seed=1).double()
    v = model.vocab
    feats = model.encode(torch.randn(3, 3, 128, 128, dtype=torch.float64))
    prompt = torch.tensor([task_prompt(v, task, [10 + 5 * i, 12, 60, 70], i, 128, 128) for i in range(3)])
    steps = 12
    allowed = allowed_tokens(v, task, prompt.shape[1] + steps, 5)
    got, probs = generate_from_prompts(model, feats, prompt, steps, allowed=allowed, stop_at_eos=False)
    want = full_recompute_greedy(model, feats, prompt, steps, allowed)
    assert torch.equal(got, want)
    assert torch.all(probs[:, : prompt.shape[1]] == 1) and torch.all((probs > 0) & (probs <= 1))
    rows = torch.arange(prompt.shape[1], got.shape[1])
    assert torch.all(allowed[rows[None, :].expand(3, -1), got[:, prompt.shape[1]:]])


def test_allowed_tokens_by_task():
    v = Pix2SeqV2Config.tiny(num_words=5).vocab
    seg = allowed_tokens(v, "segmentation", 20)
    assert not seg[:6].any() and seg[6, 0] and seg[6, v.separator] and seg[6, v.eos] and not seg[6, v.num_bins]
    assert seg[-1].nonzero().flatten().tolist() == [v.eos]
    kpt = allowed_tokens(v, "keypoint", 30, num_keypoints=5)
    assert kpt[6, v.invisible] and kpt[15, 5] and not kpt[15, v.eos]
    assert kpt[16].nonzero().flatten().tolist() == [v.eos]
    cap = allowed_tokens(v, "captioning", 10)
    assert cap[1, v.word_start] and cap[1, v.eos] and not cap[1, 0] and not cap[1, v.separator]
    det = allowed_tokens(v, "detection", 12)
    assert det[1, 0] and det[5, v.num_bins] and not det[1, v.word_start]


def test_generation_stops_at_eos_and_pads():
    model = tiny_model()
    v = model.vocab
    with torch.no_grad():  # force EOS: the output bias dominates
        model.decoder.output.bias.fill_(-100.0)
        model.decoder.output.bias[v.eos] = 100.0
    feats = model.encode(torch.randn(2, 3, 128, 128))
    tokens, probs = generate_from_prompts(model, feats, torch.tensor([[v.task_token("captioning")]] * 2), 20)
    assert tokens.tolist() == [[v.task_token("captioning"), v.eos]] * 2


def test_infer_all_shapes_and_shared_prompts():
    model = tiny_model(seed=2)
    out = infer_all(model, torch.randn(2, 3, 128, 128), [(128, 128), (100, 80)], WORDS,
                    InferenceOptions(num_keypoints=5, max_instances=3))
    assert len(out["detection"]) == 2 and len(out["captioning"]) == 2
    n_inst = sum(min(3, len(d["labels"])) for d in out["detection"])
    assert len(out["segmentation"]) == len(out["keypoint"]) == n_inst
    for r in out["keypoint"]:
        assert r["keypoints"].shape == (5, 3)
    for r in out["segmentation"]:
        assert r["rle"]["size"] == ([128, 128] if r["image"] == 0 else [80, 100])
    assert all(isinstance(c, str) for c in out["captioning"])


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=3)
    path = save_v2_checkpoint(tmp_path / "m.safetensors", model, WORDS, {"seed": 3}, half=False)
    loaded, words, meta = load_v2_checkpoint(path)
    assert words == WORDS and meta["seed"] == 3 and loaded.cfg == model.cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    from reference.pix2seq.checkpoint import CheckpointError, save_checkpoint
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
    plain = save_checkpoint(tmp_path / "p.safetensors", Pix2Seq(Pix2SeqConfig.tiny()))
    with pytest.raises(CheckpointError, match="not a Pix2SeqV2 checkpoint"):
        load_v2_checkpoint(plain)


def test_init_from_detector_reproduces_the_detectors_sequences():
    """A V2 model started from a Pix2Seq detector (the paper's detection pretraining) emits, with the
    detection task token, the detector's own greedy sequence token for token (ids mapped by meaning)."""
    from reference.pix2seq.generate import generate
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
    from reference.pix2seqv2.model import init_from_detector, token_row_map

    torch.manual_seed(3)
    dcfg = Pix2SeqConfig.tiny(num_classes=4, num_bins=64, decoder_layers=1, dropout=0.0, pos_dropout=0.0)
    dcfg.encoder.depth = 1
    detector = Pix2Seq(dcfg).double().eval()
    model = tiny_model(seed=4, num_classes=4, num_bins=127).double()
    assert init_from_detector(model, detector)["token_rows"] == 127 + 4 + 3 + 4
    x = torch.randn(3, 3, 128, 128, dtype=torch.float64)
    want, _ = generate(detector, x, method="cache", constrain=True, stop_at_eos=True)
    v = model.vocab
    steps = want.shape[1] - 1
    got, _ = generate_from_prompts(model, model.encode(x), torch.full((3, 1), v.task_token("detection")), steps,
                                   allowed=allowed_tokens(v, "detection", steps + 1))
    rows = token_row_map(v, detector.vocab)
    mapped = torch.tensor([[rows[t] for t in row] for row in got[:, 1:].tolist()])
    assert torch.equal(mapped, want[:, 1:mapped.shape[1] + 1]) and mapped.shape[1] == want.shape[1] - 1
    with pytest.raises(ValueError, match="classes"):
        token_row_map(tiny_model(num_classes=5).vocab, detector.vocab)
