"""The training loop every model's training uses: optimiser, schedule, seeding, the step loop with progress
and logging, the resume state and the shipped checkpoint with its JSON sidecar.

API (everything here is model-agnostic; a model's module builds batches and losses, this runs them):

- ``warmup_cosine(step, total, lr, warmup, min_lr_ratio=0.0) -> float``: linear warm-up from lr/warmup to
  lr over `warmup` steps (step 0 gets lr/warmup), then cosine decay to lr * min_lr_ratio at step `total`.
- ``adamw(model, lr, weight_decay, betas=(0.9, 0.999), no_decay=is_vector, lr_scale=None) -> AdamW``: two
  parameter groups, decayed and not (``no_decay(name, param)`` True: weight decay 0), plus one per other
  ``lr_scale(name)`` factor (group key "lr_scale", applied by run_steps); only parameters with
  requires_grad are given to the optimiser, so a frozen module (BLIP-2 stage 2's LM) stays out of it.
- ``seeded(seed) -> np.random.Generator``: torch.manual_seed(seed) and a numpy Generator of the same seed.
- ``run_steps(model, optimizer, step_loss, start, stop, lr, ...) -> Steps``: the loop. For each step s in
  [start, stop): each group's lr <- lr(s) * group["lr_scale"] (default 1); out = step_loss(s) (a scalar loss tensor, or a dict of scalar
  tensors with the total under "loss"); zero_grad, backward, clip the global gradient norm of the
  trainable parameters to `grad_clip` (None: no clipping), optimizer.step(), then ``after_step(s)`` (e.g.
  an EMA / momentum-encoder update, without gradient). Every `log_every` steps (and at the last) it logs
  the window's mean of each recorded value and the lr; `max_seconds` stops before a step once that much
  time has passed (Steps.stopped says why). Progress goes through bench.progress (quiet=True hides it).
  Returns ``Steps(records, seconds, stopped)``: one {name: float} per step done, its wall seconds.
- ``window_means(records, every, key="loss")``: mean of `key` per block of `every` steps.
- ``save_state(path, model, optimizer, **fields)`` / ``load_state(path, model, optimizer, expect)``: the
  resume file (torch.save); load_state refuses a file whose `expect` fields (configs) differ.
- ``write_sidecar(weights, meta)``: `<weights>.json` (sorted keys, NaN -> null), the record of a shipped
  checkpoint: reproducing command, seed, configs, data fingerprint, metrics measured at the end of training.
- ``save_weights(path, tensors, meta, half=False, header=None)``: safetensors (fp16 when `half`; `header`:
  str -> str safetensors metadata) + the sidecar.
- ``command_line(argv=None) -> str``: "vsbench <argv>" shell-quoted, the reproducing command.
- ``file_logger(path) -> log(line)``: prints a line and appends it to `path`.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from bench.progress import Progress
from bench.storage import write_json

StepLoss = Callable[[int], "torch.Tensor | Mapping[str, torch.Tensor]"]


def warmup_cosine(step: int, total: int, lr: float, warmup: int, min_lr_ratio: float = 0.0) -> float:
    """Linear warm-up to `lr` over `warmup` steps, then cosine decay to lr * min_lr_ratio at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def is_vector(name: str, param: torch.Tensor) -> bool:
    """Default no-decay rule: biases, norms and other parameters with fewer than 2 dimensions."""
    return param.ndim < 2


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          no_decay: Callable[[str, torch.Tensor], bool] = is_vector,
          lr_scale: Callable[[str], float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: group 0 decayed by `weight_decay`, group 1 not (`no_decay`).
    lr_scale(name) -> factor: parameters with another factor go to further groups whose "lr_scale"
    run_steps applies on top of the schedule (e.g. a new projection learning faster than a trained body)."""
    groups: dict[tuple[bool, float], list] = {(False, 1.0): [], (True, 1.0): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (no_decay(name, p), 1.0 if lr_scale is None else float(lr_scale(name)))
            groups.setdefault(key, []).append(p)
    if not any(groups.values()):
        raise ValueError(f"{type(model).__name__}: no parameter requires grad; nothing to train")
    return torch.optim.AdamW([{"params": params, "weight_decay": 0.0 if skip else weight_decay, "lr_scale": scale}
                              for (skip, scale), params in groups.items() if params or scale == 1.0],
                             lr=lr, betas=betas)


def seeded(seed: int) -> np.random.Generator:
    """Seed torch's global generator with `seed`; return a numpy Generator of the same seed."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass
class Steps:
    """What run_steps did: one record ({name: float}) per step, wall seconds, why it stopped early (or None)."""

    records: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None


def _record(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, torch.Tensor):
        return out, {"loss": float(out.detach())}
    if isinstance(out, Mapping) and "loss" in out:
        return out["loss"], {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
    raise TypeError(f"step_loss returned {type(out).__name__}; expected a loss tensor or a dict with a 'loss' key")


def run_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step_loss: StepLoss, start: int, stop: int,
              lr: Callable[[int], float], *, total: int | None = None, grad_clip: float | None = 1.0,
              after_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print,
              log_every: int = 0, max_seconds: float | None = None, desc: str = "train",
              quiet: bool = False) -> Steps:
    """Optimise `model` for steps start..stop-1 (see the module docstring); `total` (default `stop`) only
    labels the log lines."""
    if stop < start:
        raise ValueError(f"run_steps: stop={stop} is before start={start}")
    total = stop if total is None else total
    params = [p for p in model.parameters() if p.requires_grad]
    done, logged = Steps(), 0  # logged: records already summarised in a log line
    began = time.perf_counter()
    model.train()
    with Progress(total=stop - start, desc=desc, unit="step", quiet=quiet) as bar:
        for step in range(start, stop):
            if max_seconds is not None and time.perf_counter() - began > max_seconds:
                done.stopped = f"time budget of {max_seconds:.0f} s spent"
                log(f"stopping at step {step}: the {max_seconds:.0f} s budget is spent")
                break
            for group in optimizer.param_groups:
                group["lr"] = lr(step) * group.get("lr_scale", 1.0)
            loss, record = _record(step_loss(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if after_step is not None:
                after_step(step)
            done.records.append(record)
            bar.update(1, loss=f"{record['loss']:.3f}")
            n = step + 1
            if log_every and (n % log_every == 0 or n == stop):
                window, logged = done.records[logged:], len(done.records)
                means = " ".join(f"{k} {np.mean([r[k] for r in window]):.4f}" for k in record)
                log(f"step {n}/{total} {means} lr {lr(n):.2e} ({time.perf_counter() - began:.0f} s)")
    done.seconds = time.perf_counter() - began
    return done


def window_means(records: list[dict[str, float]], every: int, key: str = "loss") -> list[float]:
    """Mean of `key` over each block of `every` records (the last block may be shorter)."""
    return [float(np.mean([r[key] for r in records[i:i + every]])) for i in range(0, len(records), every)]


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, **fields: Any) -> None:
    """The resume file: model and optimiser states plus `fields` (step, epoch, history, configs ...)."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **fields}, path)


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               expect: Mapping[str, Any], device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a save_state file into model and optimizer; ValueError if a field of `expect` differs."""
    state = torch.load(path, map_location=device, weights_only=True)
    differs = [k for k, v in expect.items() if state.get(k) != v]
    if differs:
        raise ValueError(f"{path}: saved with another train or model config ({', '.join(differs)} differ); "
                         "use a new --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def write_sidecar(weights: Path, meta: Mapping[str, Any]) -> Path:
    """`<weights>.json`: the shipped checkpoint's record (sorted keys, NaN written as null)."""
    return write_json(Path(weights).with_suffix(".json"), dict(meta))


def save_weights(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], half: bool = False,
                 header: Mapping[str, str] | None = None) -> Path:
    """Safetensors of `tensors` (floating ones cast to fp16 when `half`) + the JSON sidecar; -> path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cast = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(cast, str(path), metadata=dict(header) if header else None)
    write_sidecar(path, meta)
    return path


def command_line(argv: list[str] | None = None) -> str:
    """The reproducing command: "vsbench " + the shell-quoted arguments (default sys.argv[1:])."""
    return "vsbench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


def file_logger(path: Path) -> Callable[[str], None]:
    """log(line): print it (flushed) and append it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    return log


def add_default_options(parser, defaults, specs) -> None:
    """One --option per (field name, type, help text) of `specs`, its default read from the config `defaults`
    and shown in the help."""
    for name, kind, text in specs:
        default = getattr(defaults, name)
        shown = repr(default) if isinstance(default, str) else default
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{text} (default: {shown})")
