"""The shared training loop (bench/training/loop.py): schedule by hand, optimiser groups, the step loop's
order of operations, logging windows, budget, hooks, resume state, checkpoint + sidecar, and that every
reproducing command recorded beside a shipped checkpoint still parses to a registered command."""

import json
import shlex
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from bench.training.loop import (adamw, command_line, load_state, run_steps, save_state, save_weights, seeded,
                                 warmup_cosine, window_means)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "bench" / "checkpoints"


def test_warmup_cosine_by_hand():
    assert warmup_cosine(0, 110, 1.0, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 110, 1.0, 10) == pytest.approx(1.0)
    assert warmup_cosine(60, 110, 1.0, 10) == pytest.approx(0.5)
    assert warmup_cosine(110, 110, 1.0, 10) == pytest.approx(0.0)
    assert warmup_cosine(500, 110, 2.0, 10, min_lr_ratio=0.1) == pytest.approx(0.2)  # floor after the end


@given(st.integers(0, 50), st.integers(51, 400), st.floats(0.0, 1.0))
def test_warmup_cosine_rises_then_falls(warmup, total, floor):
    lrs = [warmup_cosine(s, total, 1.0, warmup, floor) for s in range(total + 5)]
    peak = max(warmup - 1, 0)
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b - 1e-12 for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert min(lrs) >= min(floor, 1.0 / max(warmup, 1)) - 1e-12 and max(lrs) <= 1.0 + 1e-12


def test_adamw_groups_and_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    opt = adamw(model, 1e-3, 0.05, betas=(0.9, 0.98))
    decay, rest = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(4, 3)] and decay["weight_decay"] == 0.05
    assert sorted(p.shape for p in rest["params"]) == [(4,), (4,), (4,)] and rest["weight_decay"] == 0.0
    assert decay["betas"] == (0.9, 0.98)
    with pytest.raises(ValueError, match="no parameter requires grad"):
        adamw(model[2], 1e-3, 0.0)


def test_run_steps_is_plain_sgd_with_lr_schedule_and_hooks():
    """With SGD, no clipping and loss = w . x the update is w -= lr(s) * x: checked by hand."""
    w = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(w.weight)
    opt = torch.optim.SGD(w.parameters(), lr=0.0)
    x = torch.tensor([1.0, 2.0])
    seen, lines = [], []
    done = run_steps(w, opt, lambda s: {"loss": w(x).sum(), "step": torch.tensor(float(s))}, 3, 8,
                     lambda s: 0.1 * s, grad_clip=None, after_step=seen.append, log=lines.append, log_every=2,
                     quiet=True)
    assert seen == [3, 4, 5, 6, 7] and [r["step"] for r in done.records] == [3, 4, 5, 6, 7]
    torch.testing.assert_close(w.weight.detach(), -0.1 * sum(range(3, 8)) * x[None])
    # logs after steps 4 (window: step 3), 6 (steps 4-5) and 8 (the last: steps 6-7)
    assert [line.split()[1] for line in lines] == ["4/8", "6/8", "8/8"]
    assert " step 3.0000 " in lines[0] and " step 4.5000 " in lines[1] and " step 6.5000 " in lines[2]
    assert done.stopped is None


def test_run_steps_clips_the_trainable_gradient_norm():
    w = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(w.parameters(), lr=1.0)
    before = w.weight.detach().clone()
    run_steps(w, opt, lambda s: 100.0 * w.weight.sum(), 0, 1, lambda s: 1.0, grad_clip=0.5, quiet=True)
    torch.testing.assert_close(before - w.weight.detach(), torch.tensor([[0.5]]))


def test_run_steps_budget_and_bad_loss():
    w = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    lines = []
    done = run_steps(w, opt, lambda s: w.weight.sum(), 0, 5, lambda s: 0.1, max_seconds=0.0, log=lines.append,
                     quiet=True)
    assert done.records == [] and "budget" in done.stopped and "stopping at step 0" in lines[0]
    with pytest.raises(TypeError, match="'loss' key"):
        run_steps(w, opt, lambda s: {"total": w.weight.sum()}, 0, 1, lambda s: 0.1, quiet=True)
    with pytest.raises(ValueError, match="stop=1 is before start=2"):
        run_steps(w, opt, lambda s: w.weight.sum(), 2, 1, lambda s: 0.1, quiet=True)


def test_window_means():
    records = [{"loss": float(v)} for v in range(5)]
    assert window_means(records, 2) == [0.5, 2.5, 4.0]


def test_seeded_seeds_torch_and_numpy():
    a = seeded(3)
    ta = torch.rand(2)
    b = seeded(3)
    assert torch.equal(ta, torch.rand(2)) and a.random() == b.random()


def test_state_round_trip_and_refusal(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = adamw(model, 1e-2, 0.0)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    save_state(tmp_path / "last.pt", model, opt, step=7, train_config={"lr": 1})
    other = torch.nn.Linear(2, 2)
    other_opt = adamw(other, 1e-2, 0.0)
    state = load_state(tmp_path / "last.pt", other, other_opt, {"train_config": {"lr": 1}})
    assert state["step"] == 7 and torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="train_config differ"):
        load_state(tmp_path / "last.pt", other, other_opt, {"train_config": {"lr": 2}})


def test_save_weights_half_and_sidecar(tmp_path):
    from safetensors.torch import load_file

    path = save_weights(tmp_path / "m.safetensors", {"w": torch.tensor([0.1, 2.0]), "i": torch.tensor([3])},
                        {"command": "vsbench x", "loss": float("nan"), "cfg": (1, 2)}, half=True)
    tensors = load_file(str(path))
    assert tensors["w"].dtype == torch.float16 and tensors["i"].dtype == torch.int64
    assert json.loads(path.with_suffix(".json").read_text()) == {"cfg": [1, 2], "command": "vsbench x", "loss": None}


def test_command_line_quotes():
    assert command_line(["train", "detection", "--out", "a b"]) == "vsbench train detection --out 'a b'"


def recorded_files() -> list:
    """Every checkpoint sidecar (a .json beside a .safetensors) and every other shipped record with a command."""
    return sorted(p for p in CHECKPOINTS.glob("*.json")
                  if p.with_suffix(".safetensors").is_file() or "command" in json.loads(p.read_text()))


@pytest.mark.parametrize("sidecar", recorded_files(), ids=lambda p: p.name)
def test_recorded_commands_still_parse(sidecar):
    """Every shipped checkpoint's reproducing command (that of the checkpoint it started from, and every step of
    a recorded provenance chain) parses with today's CLI to a registered command."""
    from bench.cli import build_parser

    meta = json.loads(sidecar.read_text())
    commands = [meta["command"]]
    if isinstance(meta.get("init_from"), dict) and meta["init_from"].get("command"):
        commands.append(meta["init_from"]["command"])
    commands += [step["command"] for step in meta.get("provenance", {}).get("chain", [])]
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "vsbench"
        args = build_parser().parse_args(words[1:])
        assert args.command == words[1]


def test_lr_scale_groups_learn_at_their_factor():
    """SGD-like check with AdamW's first step (update = lr * sign(grad)): the scaled layer moves 10x."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
    opt = adamw(model, 0.01, 0.0, lr_scale=lambda name: 10.0 if name.startswith("1.") else 1.0)
    assert [g["lr_scale"] for g in opt.param_groups] == [1.0, 1.0, 10.0]
    before = [p.detach().clone() for p in model.parameters()]
    run_steps(model, opt, lambda s: model(torch.ones(1, 2)).sum(), 0, 1, lambda s: 0.01, grad_clip=None, quiet=True)
    moved = [(p.detach() - b).abs() for p, b in zip(model.parameters(), before)]
    torch.testing.assert_close(moved[0], torch.full_like(moved[0], 0.01), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(moved[1], torch.full_like(moved[1], 0.1), rtol=1e-3, atol=1e-6)
