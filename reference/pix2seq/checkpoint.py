"""Saving and loading Pix2Seq weights.

- Our format: one safetensors file; its metadata holds the model config as JSON ("config") and any
  extra string fields (seed, command, metrics). fp16 storage is optional; loading casts to float32.
- The port's format: a torch state_dict of its EncoderDecoder (optionally wrapped in {"state_dict": ...}
  or {"model": ...}, optionally with DataParallel's "module." prefix). Our module tree has the port's
  names, so it loads strictly; anything missing, unexpected or of another shape is listed in the error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig


class CheckpointError(ValueError):
    """A checkpoint that is unreadable or does not fit the model; the message lists the offending keys."""


def _describe(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint",
                     ignore: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError listing missing, unexpected and shape-mismatched keys (prefixes in `ignore` skipped)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    given = {k: v for k, v in state.items() if not k.startswith(ignore)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    bad_type = sorted(k for k, v in given.items() if not isinstance(v, torch.Tensor))
    bad_dtype = sorted(f"{k} ({given[k].dtype})" for k in set(given) & set(expected)
                       if k not in bad_type and not given[k].is_floating_point())
    not_finite = sorted(k for k in set(given) & set(expected) if k not in bad_type and given[k].is_floating_point()
                        and not bool(torch.isfinite(given[k]).all()))
    shapes = sorted(f"{k} {tuple(given[k].shape)} (model {tuple(expected[k])})" for k in set(given) & set(expected)
                    if k not in bad_type and tuple(given[k].shape) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"missing keys [{_describe(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_describe(unexpected)}]")
    if bad_type:
        problems.append(f"non-tensor values [{_describe(bad_type)}]")
    if shapes:
        problems.append(f"shape mismatches [{_describe(shapes)}]")
    if bad_dtype:  # casting int / bool weights to float would load silently and score 0
        problems.append(f"non-floating-point weights [{_describe(bad_dtype)}]")
    if not_finite:
        problems.append(f"weights with NaN or inf [{_describe(not_finite)}]")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A saved object -> a flat state_dict: unwraps {"state_dict"|"model": ...} and strips "module."."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state_dict")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_port_state_dict(model: Pix2Seq, state: Any, source: str = "port state_dict") -> Pix2Seq:
    """Load the port's EncoderDecoder state_dict (or a wrapper of it) into `model`, strictly."""
    state = unwrap_state_dict(state, source)
    ignore = ("encoder.model.head.", "encoder.model.fc_norm.")  # timm heads: absent when num_classes=0
    check_state_dict(model, state, source, ignore)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(ignore)})
    return model


def load_port_checkpoint(path: str | os.PathLike, config: Pix2SeqConfig | None = None,
                         map_location: str | torch.device = "cpu") -> Pix2Seq:
    """A .pth file saved by the port (torch.save(model.state_dict())) -> Pix2Seq of `config` (default: port),
    in eval mode (dropout off), like `load_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"port checkpoint {path} does not exist")
    _check_device(map_location, path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and EOF errors all mean the same thing here
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc
    return load_port_state_dict(Pix2Seq(config or Pix2SeqConfig.port()), state, str(path)).to(map_location).eval()


def _check_device(map_location, path: Path) -> None:
    """A CUDA map_location on a machine without CUDA is named as such (not as an unreadable file)."""
    device = torch.device(map_location) if isinstance(map_location, str) else map_location
    if isinstance(device, torch.device) and device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"{path}: map_location={str(map_location)!r} but CUDA is not available on this "
                              "machine; load with map_location='cpu'")


def load_timm_encoder(model: Pix2Seq, state: Any, source: str = "timm state_dict") -> Pix2Seq:
    """Load timm DeiT-III weights (e.g. deit3_small_patch16_384, a local file's state_dict) into the ViT."""
    state = unwrap_state_dict(state, source)
    ignore = ("head.", "fc_norm.")
    check_state_dict(model.encoder.model, state, source, ignore)
    model.encoder.model.load_state_dict({k: v for k, v in state.items() if not k.startswith(ignore)})
    return model


def save_checkpoint(path: str | os.PathLike, model: Pix2Seq, metadata: Mapping[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write the weights (fp16 when `half`) and the config + metadata (JSON-encoded values) as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.cfg.to_dict(), sort_keys=True), "format": "vsbench-pix2seq-1"}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()})
    save_file(tensors, str(path), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint written by save_checkpoint, JSON-decoded (config included)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if "config" not in raw:
        raise CheckpointError(f"{path} has no 'config' in its metadata: not written by save_checkpoint")
    meta = {}
    for key, value in raw.items():
        if key == "format":
            meta[key] = value
            continue
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON ({exc.msg} at column "
                                  f"{exc.colno}): {value[:80]!r}") from exc
    return meta


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Pix2Seq, dict]:
    """A file written by save_checkpoint -> (model in float32, eval mode, metadata dict)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    _check_device(map_location, Path(path))
    try:
        config = Pix2SeqConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config in metadata is invalid: {exc}") from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    model = Pix2Seq(config)
    check_state_dict(model, state, str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(map_location).eval(), meta
