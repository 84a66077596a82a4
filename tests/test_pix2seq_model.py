"""Pix2Seq model: the port's parameter names and sizes, parity with nn.TransformerDecoder, the channel
pooling and the DeiT-III layout checked by hand, incremental decoding equal to the full pass."""

import pytest
import torch
from torch import nn

from reference.pix2seq.model import IMAGENET_MEAN, IMAGENET_STD, Pix2Seq, Pix2SeqConfig, prepare_images
from reference.vision.vit import ViTConfig, VisionTransformer


def small_config(**overrides) -> Pix2SeqConfig:
    base = dict(encoder=ViTConfig(image_size=32, patch_size=8, dim=64, depth=2, heads=2), dim=32,
                decoder_layers=2, decoder_heads=4, decoder_ff=48, num_bins=16, num_classes=3, max_len=27)
    return Pix2SeqConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def model() -> Pix2Seq:
    torch.manual_seed(0)
    return Pix2Seq(small_config()).double().eval()


def test_port_size_and_parameter_names():
    port = Pix2Seq(Pix2SeqConfig.port())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(port.encoder) == 21_820_416  # DeiT-III small/16 @ 384 without its head
    assert count(port.decoder) == 9_905_303  # the port's decoder: about 9.9M parameters
    keys = set(port.state_dict())
    for name in ["patch_embed.proj.weight", "cls_token", "pos_embed", "norm.weight", "blocks.11.norm1.weight",
                 "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.0.ls1.gamma", "blocks.0.norm2.bias",
                 "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "blocks.0.ls2.gamma"]:
        assert f"encoder.model.{name}" in keys
    assert port.state_dict()["encoder.model.pos_embed"].shape == (1, 576, 384)  # no_embed_class: patches only
    assert port.state_dict()["decoder.decoder_pos_embed"].shape == (1, 299, 256)  # max_len - 1
    torch_layer = nn.TransformerDecoderLayer(256, 8, 2048, 0.1)
    assert set(port.decoder.decoder.layers[5].state_dict()) == set(torch_layer.state_dict())
    assert float(port.encoder.model.blocks[0].ls1.gamma[0].detach()) == pytest.approx(1e-6)


def test_decoder_matches_torch_transformer_decoder(model):
    cfg = model.cfg
    peer = nn.TransformerDecoder(nn.TransformerDecoderLayer(cfg.dim, cfg.decoder_heads, cfg.decoder_ff, 0.1),
                                 cfg.decoder_layers).double().eval()
    peer.load_state_dict(model.decoder.decoder.state_dict())
    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32, dtype=torch.double)
    tokens = torch.randint(0, model.vocab.size, (3, 11))
    tokens[:, 0] = model.vocab.bos
    tokens[1, 7:] = model.vocab.pad
    tokens[2, 4] = model.vocab.pad  # a PAD inside a row is masked as a key, as the port does
    with torch.no_grad():
        memory = model.decoder.memory(model.encode(images))
        causal = nn.Transformer.generate_square_subsequent_mask(11, dtype=torch.double)
        padding = torch.zeros(tokens.shape, dtype=torch.double).masked_fill(tokens == model.vocab.pad, float("-inf"))
        out = peer(model.decoder.embed(tokens).transpose(0, 1), memory.transpose(0, 1), tgt_mask=causal,
                   tgt_key_padding_mask=padding).transpose(0, 1)
        expected = model.decoder.output(out)
        ours = model(images, tokens)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def test_channel_pooling_is_adaptive_average_by_hand(model):
    images = torch.randn(2, 3, 32, 32, dtype=torch.double)
    with torch.no_grad():
        tokens = model.encoder.model(images)  # (2, 1 + 16, 64)
        pooled = model.encode(images)  # (2, 16, 32)
    assert tokens.shape == (2, 17, 64) and pooled.shape == (2, 16, 32)
    torch.testing.assert_close(pooled, tokens[:, 1:].reshape(2, 16, 32, 2).mean(-1))  # 64 -> 32: pairs


def test_vit_adds_position_embedding_to_patches_only():
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(image_size=16, patch_size=8, dim=8, depth=0, heads=2)).double().eval()
    images = torch.randn(1, 3, 16, 16, dtype=torch.double)
    with torch.no_grad():
        vit.norm.weight.fill_(1.0), vit.norm.bias.zero_()
        out = vit(images)  # depth 0: norm(cat(cls, patches + pos))
        patches = vit.patch_embed.proj(images).flatten(2).transpose(1, 2) + vit.pos_embed
        expected = nn.functional.layer_norm(torch.cat([vit.cls_token, patches], 1), (8,), eps=1e-6)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="images must have shape"):
        vit(torch.zeros(1, 3, 32, 32, dtype=torch.double))
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        ViTConfig(image_size=20, patch_size=8)


def test_incremental_decode_equals_full_pass(model):
    torch.manual_seed(2)
    images = torch.randn(2, 3, 32, 32, dtype=torch.double)
    tokens = torch.randint(0, model.vocab.num_bins, (2, 9))
    tokens[:, 0] = model.vocab.bos
    tokens[0, 5] = model.vocab.pad
    with torch.no_grad():
        full = model(images, tokens)
        memory_kv = model.decoder.cross_kv(model.decoder.memory(model.encode(images)))
        cache = model.new_cache(2, 9)
        first = model.decoder.decode(tokens[:, :4], 0, memory_kv, cache)  # a prefill of 4, then one by one
        rest = [model.decoder.decode(tokens[:, t:t + 1], t, memory_kv, cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat([first, *rest], 1), full, rtol=1e-10, atol=1e-10)


def test_decoder_rejects_positions_beyond_max_len(model):
    tokens = torch.full((1, model.cfg.max_len), model.vocab.bos)
    with pytest.raises(ValueError, match="max_len - 1"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.double), tokens)


def test_config_round_trip_and_constructors():
    cfg = Pix2SeqConfig.tiny(decoder_layers=3)
    assert Pix2SeqConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.decoder_layers == 3 and cfg.vocab.num_bins == 128
    port = Pix2SeqConfig.port()
    assert (port.vocab.bos, port.vocab.eos, port.vocab.pad, port.image_size) == (404, 405, 406, 384)
    with pytest.raises(ValueError, match="divisible"):
        Pix2SeqConfig(dim=250)


def test_prepare_images_by_hand():
    image = torch.full((8, 8, 3), 255, dtype=torch.uint8)
    x = prepare_images([image.numpy(), image.numpy()], 4)
    assert x.shape == (2, 3, 4, 4)
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected.expand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"images\[0\] must be HxWx3"):
        prepare_images([torch.zeros(8, 8)], 4)


def test_static_shape_decode_equals_eager_decode(model):
    """The CUDA-graph path decodes with the position in a tensor over the whole cache; same logits."""
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32, dtype=torch.double)
    tokens = torch.randint(0, model.vocab.num_bins, (2, 7))
    tokens[:, 0] = model.vocab.bos
    tokens[1, 3] = model.vocab.pad
    with torch.no_grad():
        memory_kv = model.decoder.cross_kv(model.decoder.memory(model.encode(images)))
        eager, static = model.new_cache(2, 10), model.new_cache(2, 10)
        for t in range(7):
            a = model.decoder.decode(tokens[:, t:t + 1], t, memory_kv, eager)
            b = model.decoder.decode(tokens[:, t:t + 1], torch.tensor([t]), memory_kv, static)
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
