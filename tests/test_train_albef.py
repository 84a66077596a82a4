"""`vsbench train-albef` / `train-blip` on a tiny generated dataset: a few steps run through the CLI, the checkpoint
round-trips (fp16, without the momentum copy and the queue, BLIP's shared tensors re-tied), the recorded command
parses back to the same config; the warm-up schedules by hand."""

import json
import shlex

import pytest
import torch

from bench.datasets.synthetic import SyntheticConfig, generate_dataset
from bench.training import albef as albef_training
from bench.training.albef import (AlbefTrainConfig, alpha_at, config_from_args, load_albef, queue_in_use,
                                  shipped_state)

TINY = ["--steps", "3", "--batch-size", "4", "--hidden-size", "32", "--num-heads", "2", "--intermediate-size", "48",
        "--image-depth", "1", "--embed-dim", "16", "--queue-size", "6", "--queue-start", "1", "--queue-warmup", "1",
        "--alpha-warmup", "1", "--itm-hard-warmup", "2", "--warmup", "1", "--log-every", "0"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), SyntheticConfig(num_train=10, num_val=4))


@pytest.fixture()
def cli(tiny_dataset, monkeypatch):
    """bench.cli.main with the generated default dataset replaced by the tiny one."""
    import bench.datasets.synthetic as synthetic
    from bench.cli import main

    monkeypatch.setattr(synthetic, "default_dataset", lambda *a, **k: tiny_dataset)
    return main


def parse(command: str):
    from bench.cli import build_parser

    words = shlex.split(command)
    assert words[0] == "vsbench"
    return build_parser().parse_args(words[1:])


def test_schedules_by_hand():
    cfg = AlbefTrainConfig(alpha=0.4, alpha_warmup=100, queue_size=256, queue_start=300, queue_warmup=200)
    assert [alpha_at(s, cfg) for s in (0, 50, 100, 400)] == [0.0, pytest.approx(0.2), pytest.approx(0.4),
                                                             pytest.approx(0.4)]
    assert [queue_in_use(s, cfg) for s in (0, 299, 300, 400, 499, 500, 900)] == [0, 0, 0, 128, 254, None, None]
    assert queue_in_use(0, AlbefTrainConfig(queue_start=0, queue_warmup=0)) is None  # no warm-up: the whole queue
    assert alpha_at(0, AlbefTrainConfig(alpha=0.4, alpha_warmup=0)) == 0.4


def test_train_albef_command_round_trip(cli, tmp_path, tiny_dataset):
    out = tmp_path / "albef.safetensors"
    assert cli(["train-albef", *TINY, "--alpha", "0.3", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps_done"] == 3 and meta["dataset_fingerprint"] == tiny_dataset.fingerprint
    assert meta["train_config"]["alpha"] == 0.3 and meta["seed"] == 0
    for key in ("val_itc_i2t_R@1", "val_itm_itc_t2i_R@5", "val_itm_loss_1pos_2hard", "val_prior_loss",
                "val_mlm_accuracy", "train_mlm_accuracy_last100", "train_temp_last100"):
        assert key in meta["metrics_at_save"], key
    assert meta["metrics_at_save"]["val_prior_loss"] == pytest.approx(0.6365, abs=1e-4)
    # the recorded command parses back to the same training config
    args = parse(meta["command"])
    assert args.command == "train-albef"
    assert config_from_args(AlbefTrainConfig, args) == AlbefTrainConfig(
        **{**meta["train_config"], "encoder": AlbefTrainConfig().encoder})
    # the checkpoint: fp16, no momentum copy or queue; loading gives back the same weights
    from safetensors.torch import load_file

    stored = load_file(str(out))
    assert not [k for k in stored if k.startswith(("model.momentum.", "model.queue."))]
    assert all(v.dtype == torch.float16 for k, v in stored.items() if k.startswith("model.") and v.is_floating_point())
    model, encoder, tokenizer, meta2 = load_albef(out)
    assert meta2 == meta and len(model.queue) == 0
    for name, value in shipped_state(model).items():
        torch.testing.assert_close(value, stored[f"model.{name}"].float(), rtol=0, atol=0)
    online = dict(model.online_modules().named_parameters())
    for name, p in model.momentum.named_parameters():  # the momentum copy restarts from the online weights
        assert torch.equal(p, online[name]) and p is not online[name] and not p.requires_grad
    assert model.mlm_head.word_embeddings[0] is model.text.word_embeddings  # the tie survives loading
    assert model.momentum["mlm_head"].word_embeddings[0] is model.momentum["text"].word_embeddings
    # evaluating the loaded checkpoint gives the metrics recorded at save time
    from bench.training.qformer import load_split

    val = load_split(tiny_dataset, "val", encoder)
    again = albef_training.evaluate_albef(model, val, tokenizer, meta["train_config"]["max_text_len"])
    for key in ("itc_i2t_R@1", "itm_itc_t2i_R@1", "mlm_accuracy"):
        assert again[key] == pytest.approx(meta["metrics_at_save"][f"val_{key}"], abs=1e-6), key


def test_blip_teacher_capfilt_and_students(cli, tmp_path, tiny_dataset):
    from bench.training.blip import BlipTrainConfig, bootstrapped, load_blip, noisy_captions

    teacher = tmp_path / "teacher.safetensors"
    blip_tiny = [*TINY, "--clean-images", "4"]  # images 1-4 clean, 5-10 web
    assert cli(["train-blip", "model", *blip_tiny, "--num-layers", "1", "--captions", "noisy", "--out",
                str(teacher)]) == 0
    meta = json.loads(teacher.with_suffix(".json").read_text())
    assert meta["training_captions"]["injected"] == 2 * 6 and meta["training_captions"]["total"] == 50
    assert {"val_BLEU-4", "val_itc_t2i_R@1", "val_itm_loss_1pos_2random"} <= set(meta["metrics_at_save"])
    assert config_from_args(BlipTrainConfig, parse(meta["command"])).captions == "noisy"
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(teacher)) if k.startswith("model.text_decoder.word_embeddings")]
    model = load_blip(teacher)[0]  # the decoder shares the encoder's modules again after loading
    assert model.text_decoder.word_embeddings is model.text_encoder.word_embeddings
    assert model.text_decoder.layers[0].ffn is model.text_encoder.layers[0].ffn
    assert model.text_decoder.layers[0].attention is not model.text_encoder.layers[0].attention

    record_path = tmp_path / "capfilt.json"
    # the untrained teacher would remove nearly everything at 0.5; a threshold of 0 keeps every caption
    assert cli(["train-blip", "capfilt", "--teacher", str(teacher), "--out", str(record_path), "--threshold", "0"]) == 0
    record = json.loads(record_path.read_text())
    noisy = noisy_captions(tiny_dataset, 2, 0, 4)
    assert [c.injected for c in noisy[:20]] == [False] * 20  # the clean images' captions are untouched
    report = record["metrics_at_save"]["filter_web"]
    removed = [flag == "0" for flag in record["keep_web"]]
    assert len(removed) == 50 and report["removed"] == sum(removed) and report["injected"] == 12
    assert report["captions"] == 30 and not any(removed[:20])  # only the web captions are filtered
    assert report["tp"] == sum(r and c.injected for r, c in zip(removed, noisy))
    assert report["removed"] == 0 and report["precision"] is None and report["recall"] == 0
    assert len(record["synthetic"]) == 6 and parse(record["command"]).part == "capfilt"
    cleaned = bootstrapped(record, noisy)
    assert sum(map(len, cleaned.values())) == record["metrics_at_save"]["cleaned_captions"]

    student = tmp_path / "student.safetensors"
    assert cli(["train-blip", "model", *blip_tiny, "--num-layers", "1", "--captions", "capfilt", "--capfilt",
                str(record_path), "--init", str(teacher), "--out", str(student)]) == 0
    smeta = json.loads(student.with_suffix(".json").read_text())
    assert smeta["init_from"]["command"] == meta["command"] and smeta["training_captions"]["captions"] == "capfilt"
    assert smeta["training_captions"]["captions_used"] == record["metrics_at_save"]["cleaned_captions"]
    empty = {**record, "keep_web": "0" * 50, "synthetic": []}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    with pytest.raises(ValueError, match="0 of 10 training images have a caption"):
        cli(["train-blip", "model", *blip_tiny, "--captions", "capfilt", "--capfilt", str(tmp_path / "empty.json"),
             "--out", str(tmp_path / "y.safetensors")])
    with pytest.raises(ValueError, match="vocabulary or model config differs"):
        cli(["train-blip", "model", *blip_tiny, "--num-layers", "2", "--init", str(teacher), "--out",
             str(tmp_path / "x.safetensors")])
