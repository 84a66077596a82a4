"""Checkpoints: safetensors round trip, the port's state_dict format, clear errors for bad files."""

import pytest
import torch

from reference.pix2seq.checkpoint import (CheckpointError, load_checkpoint, load_port_checkpoint,
                                          load_port_state_dict, load_timm_encoder, read_metadata, save_checkpoint)
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
from reference.vision.vit import ViTConfig

CFG = Pix2SeqConfig(encoder=ViTConfig(image_size=32, patch_size=16, dim=32, depth=1, heads=2), dim=16,
                    decoder_layers=1, decoder_heads=2, decoder_ff=32, num_bins=8, num_classes=2, max_len=12)


def make_model(seed: int = 0) -> Pix2Seq:
    torch.manual_seed(seed)
    return Pix2Seq(CFG).eval()


def assert_same_weights(a: Pix2Seq, b: Pix2Seq, **tol) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], **tol, msg=key)


def test_round_trip_float32_is_exact_and_keeps_metadata(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"seed": 7, "metrics": {"AP50": 0.9}})
    loaded, meta = load_checkpoint(path)
    assert loaded.cfg == CFG and not loaded.training
    assert meta["seed"] == 7 and meta["metrics"] == {"AP50": 0.9} and meta["config"] == CFG.to_dict()
    assert_same_weights(model, loaded, rtol=0, atol=0)
    assert read_metadata(path)["seed"] == 7


def test_round_trip_float16_is_close(tmp_path):
    model = make_model()
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "h.safetensors", model, half=True))
    assert loaded.decoder.output.weight.dtype == torch.float32
    assert_same_weights(model, loaded, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module"])
def test_port_format_loads(tmp_path, wrap):
    port = make_model(1)
    state = port.state_dict()
    state["encoder.model.head.weight"] = torch.zeros(0)  # timm's head with num_classes=0 holds nothing useful
    if wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"state_dict": state, "epoch": 3} if wrap == "state_dict" else state
    torch.save(obj, tmp_path / "port.pth")
    loaded = load_port_checkpoint(tmp_path / "port.pth", CFG)
    assert_same_weights(port, loaded, rtol=0, atol=0)


def test_mismatched_port_state_dict_lists_offending_keys():
    state = make_model().state_dict()
    del state["decoder.output.bias"]
    state["decoder.extra"] = torch.zeros(1)
    state["decoder.decoder_pos_embed"] = torch.zeros(1, 99, 16)
    with pytest.raises(CheckpointError) as info:
        load_port_state_dict(make_model(), state)
    message = str(info.value)
    assert "missing keys [decoder.output.bias]" in message
    assert "unexpected keys [decoder.extra]" in message
    assert "decoder.decoder_pos_embed (1, 99, 16) (model (1, 11, 16))" in message


def test_config_mismatch_is_reported_by_key(tmp_path):
    other = Pix2Seq(Pix2SeqConfig(**{**CFG.to_dict(), "num_classes": 5}))
    torch.save(other.state_dict(), tmp_path / "voc.pth")
    with pytest.raises(CheckpointError, match=r"decoder\.embedding\.weight \(16, 16\) \(model \(13, 16\)\)"):
        load_port_checkpoint(tmp_path / "voc.pth", CFG)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(bad)
    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_port_checkpoint(bad_pth, CFG)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_port_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_port_state_dict(make_model(), [1, 2, 3])


def test_truncated_safetensors_is_rejected(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", make_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_safetensors_without_our_config_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="no 'config'"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_timm_encoder_weights_load_into_the_vit():
    source, target = make_model(2), make_model(3)
    timm_state = {k[len("encoder.model."):]: v for k, v in source.state_dict().items() if k.startswith("encoder.model.")}
    timm_state["head.weight"], timm_state["head.bias"] = torch.zeros(1000, 32), torch.zeros(1000)
    load_timm_encoder(target, timm_state)
    torch.testing.assert_close(target.encoder.model.pos_embed, source.encoder.model.pos_embed)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_timm_encoder(target, {"cls_token": torch.zeros(1, 1, 32)})
