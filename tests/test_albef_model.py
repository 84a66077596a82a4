"""The tiny ALBEF model: shapes, where gradients flow (and never into the momentum encoders), what one training
step does to the momentum encoders and the queue, and the config's refusals."""

import pytest
import torch

from cases.interface.albef import TINY_CONFIG, random_batch
from reference.albef.api import albef_config
from reference.albef.model import Albef, AlbefConfig
from reference.albef.momentum import matched_parameters
from reference.albef.text import TextTransformerConfig


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return Albef(albef_config(TINY_CONFIG)).eval()


def batch(B=4, T=8, seed=0):
    return random_batch(B, T, seed=seed)


def test_passes_have_the_documented_shapes(model):
    feats, ids, mask = batch()
    embeds, image_feat = model.image_pass(feats)
    hidden, text_feat = model.text_pass(ids, mask)
    assert embeds.shape == (4, 1 + 6, 32) and image_feat.shape == (4, 16) and hidden.shape == (4, 8, 32)
    torch.testing.assert_close(image_feat.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(text_feat.norm(dim=-1), torch.ones(4))
    assert model.itm_logits(feats, ids, mask).shape == (4, 2)
    assert model.mlm_logits(ids, mask, embeds).shape == (4, 8, 40)


def test_gradients_reach_the_online_model_and_never_the_momentum_copy(model):
    feats, ids, mask = batch()
    out = model(feats, ids, mask, image_ids=torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(0))
    assert set(out) == {"itc", "itm", "mlm", "loss", "mlm_accuracy"}
    assert all(torch.isfinite(out[k]) for k in ("itc", "itm", "mlm", "loss"))
    assert out["mlm_accuracy"].isnan() or 0 <= float(out["mlm_accuracy"]) <= 1
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in model.momentum_parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing}"
    assert model.temp.grad is not None and model.temp.grad != 0


def test_each_loss_reaches_its_own_parts(model):
    feats, ids, mask = batch()
    out = model(feats, ids, mask, generator=torch.Generator().manual_seed(1), update_state=False)
    model.zero_grad()
    out["itc"].backward(retain_graph=True)
    assert model.itm_head.weight.grad is None, "ITC must not reach the ITM head"
    assert model.text.layers[1].crossattention.query.weight.grad is None, "ITC must not reach the fusion layers"
    model.zero_grad()
    out["itm"].backward(retain_graph=True)
    assert model.itm_head.weight.grad is not None and model.text_proj.weight.grad is None
    model.zero_grad()
    out["mlm"].backward()
    assert model.mlm_head.dense.weight.grad is not None and model.vision_proj.weight.grad is None


def test_a_step_moves_the_momentum_copy_by_the_ema_and_enqueues_its_keys(model):
    feats, ids, mask = batch()
    with torch.no_grad():
        for p in model.online_modules().parameters():
            p.add_(0.01)  # an optimizer step: online and momentum weights now differ
    online, mom = matched_parameters(model.online_modules(), model.momentum)
    before = [p.clone() for p in mom]
    model(feats, ids, mask, image_ids=torch.tensor([5, 6, 7, 8]), generator=torch.Generator().manual_seed(0))
    for p, p_m0, p_m in zip(online, before, mom):
        torch.testing.assert_close(p_m, 0.995 * p_m0 + 0.005 * p)
    q_img, q_txt, q_ids = model.queue.contents()
    assert q_ids.tolist() == [5, 6, 7, 8]
    with torch.no_grad():
        torch.testing.assert_close(q_img, model.image_pass(feats, momentum=True)[1])
        torch.testing.assert_close(q_txt, model.text_pass(ids, mask, momentum=True)[1])
    model(feats, ids, mask, image_ids=torch.tensor([9, 10, 11, 12]), generator=torch.Generator().manual_seed(0))
    assert model.queue.contents()[2].tolist() == [5, 6, 7, 8, 9, 10, 11, 12]  # queue of 8: full


def test_update_state_false_changes_nothing(model):
    feats, ids, mask = batch()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = model(feats, ids, mask, generator=torch.Generator().manual_seed(3), update_state=False)
    b = model(feats, ids, mask, generator=torch.Generator().manual_seed(3), update_state=False)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_alpha_zero_removes_distillation_from_itc(model):
    """With an empty queue and distinct images, alpha = 0 is in-batch ITC against the momentum keys."""
    feats, ids, mask = batch()
    out = model(feats, ids, mask, alpha=0.0, generator=torch.Generator().manual_seed(0), update_state=False)
    with torch.no_grad():
        img = model.image_pass(feats)[1]
        txt = model.text_pass(ids, mask)[1]
        img_m = model.image_pass(feats, momentum=True)[1]
        txt_m = model.text_pass(ids, mask, momentum=True)[1]
    t = model.temperature()
    target = torch.arange(4)
    expected = (torch.nn.functional.cross_entropy(img @ txt_m.t() / t, target)
                + torch.nn.functional.cross_entropy(txt @ img_m.t() / t, target)) / 2
    torch.testing.assert_close(out["itc"].detach(), expected, atol=1e-5, rtol=1e-5)


def test_batch_of_one_and_all_captions_of_one_image_train(model):
    """No ITM negative exists (batch 1, one image): ITM is computed on the positives alone, never a crash."""
    for B, image_ids in ((1, None), (3, torch.zeros(3, dtype=torch.long))):
        feats, ids, mask = batch(B)
        out = model(feats, ids, mask, image_ids=image_ids, generator=torch.Generator().manual_seed(0))
        assert all(torch.isfinite(v) for v in out.values())


def test_config_refusals():
    with pytest.raises(ValueError, match="encoder_width"):
        AlbefConfig(text=TextTransformerConfig(encoder_width=48, cross_attention_from=2))
    with pytest.raises(ValueError, match="text-only and one fusion"):
        AlbefConfig(text=TextTransformerConfig(cross_attention_from=0))
    with pytest.raises(ValueError, match="mask_token_id"):
        AlbefConfig(text=TextTransformerConfig(vocab_size=4, cross_attention_from=2), mask_token_id=5)
    config = AlbefConfig(image={"patch_width": 24}, text={"cross_attention_from": 1}, mlm={"probability": 0.2})
    assert config.image.patch_width == 24 and config.mlm.probability == 0.2
