"""How much work each generation step does, counted (no timing): the KV-cache loop runs the encoder once, feeds
one token per decoder layer per step, dispatches the same operations at every step, writes the same amount of
float data every step (a preallocated cache, no growing torch.cat), and its FLOPs grow by exactly the attention
over one more key per layer; the port's loop repeats the full fixed-shape work at every step. A regression that
slowed the fixed-step path (a recomputed prefix, a re-run encoder, a cache concatenated per step) breaks these."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.flops import CPU_ATTENTION
from reference.pix2seq.generate import generate
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig
from reference.vision.vit import ViTConfig

B, LAYERS, DIM, HEADS, STEPS = 3, 2, 32, 4, 12
FORMULAS = {**flop_registry, **CPU_ATTENTION}


class StepWork(TorchDispatchMode):
    """Per decoder step (a step ends at each call of the output projection): dispatched ops that compute (views
    are left out: indexing skips the op for a full slice), FLOPs, and the elements of the floating-point
    tensors those ops produce."""

    def __init__(self):
        super().__init__()
        self.steps = [{"ops": 0, "flops": 0, "float_elements": 0}]

    def end_step(self, *_):
        self.steps.append({"ops": 0, "flops": 0, "float_elements": 0})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        step = self.steps[-1]
        is_view = any(r.alias_info is not None for r in func._schema.returns)
        step["ops"] += not is_view
        packet = func._overloadpacket
        if packet in FORMULAS:
            formula = FORMULAS[packet]
            step["flops"] += formula(*args, **kwargs, out_val=out)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not is_view:
                step["float_elements"] += t.numel()
        return out


def model() -> Pix2Seq:
    torch.manual_seed(0)
    cfg = Pix2SeqConfig(encoder=ViTConfig(image_size=32, patch_size=16, dim=32, depth=1, heads=2), dim=DIM,
                        decoder_layers=LAYERS, decoder_heads=HEADS, decoder_ff=64, num_bins=12, num_classes=3,
                        max_len=STEPS + 9)
    return Pix2Seq(cfg).eval()


def run(method: str):
    m = model()
    calls = {"encoder": 0, "layer_tokens": []}
    m.encoder.register_forward_hook(lambda *_: calls.__setitem__("encoder", calls["encoder"] + 1))
    for layer in m.decoder.decoder.layers:
        layer.register_forward_pre_hook(lambda mod, args: calls["layer_tokens"].append(args[0].shape[1]))
    work = StepWork()
    m.decoder.output.register_forward_hook(work.end_step)
    images = torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with work:
        tokens, _ = generate(m, images, method=method, max_new_tokens=STEPS, stop_at_eos=False)
    assert tokens.shape == (B, 1 + STEPS)
    return calls, work.steps[:STEPS]  # the last entry holds the work after the final projection


def test_cache_loop_does_constant_work_per_step():
    calls, steps = run("cache")
    assert calls["encoder"] == 1
    assert calls["layer_tokens"] == [1] * (LAYERS * STEPS)  # one token per layer per step, never the prefix
    later = steps[1:]  # step 0 also holds the encoder and the cross-attention K/V
    assert len({s["ops"] for s in later}) == 1, [s["ops"] for s in later]
    # data written per step grows at most by the key mask SDPA turns into floats (B x 1 x 1 x S per layer); a cache
    # concatenated per step would write 2 x LAYERS x B x DIM more elements at every step
    written = [b["float_elements"] - a["float_elements"] for a, b in zip(later, later[1:])]
    assert len(set(written)) == 1 and 0 <= written[0] <= LAYERS * B, written
    growth = [b["flops"] - a["flops"] for a, b in zip(later, later[1:])]
    # one more key per layer and step: q.k and p.v each gain B x heads x head_dim multiply-adds (2 FLOPs each)
    assert growth == [LAYERS * 2 * 2 * B * DIM] * len(growth)


def test_port_loop_repeats_the_full_work_every_step():
    calls, steps = run("port")
    assert calls["encoder"] == STEPS
    padded = STEPS + 8  # the port pads the prefix to max_len - 1
    assert calls["layer_tokens"] == [padded] * (LAYERS * STEPS)
    assert len({s["flops"] for s in steps}) == 1
    _, cache_steps = run("cache")
    assert steps[-1]["flops"] > 10 * cache_steps[-1]["flops"]


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_option_restores_the_setting(threads):
    m, before = model(), torch.get_num_threads()
    images = torch.randn(2, 3, 32, 32)
    a = generate(m, images, method="cache", max_new_tokens=5, stop_at_eos=False)
    b = generate(m, images, method="cache", max_new_tokens=5, stop_at_eos=False, threads=threads)
    assert torch.equal(a[0], b[0]) and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0"):
        generate(m, images, threads=0)
