"""Faults of the harness itself for the bad-input table (bench/reliability.py): the CLI, the cache, the
results folder, run publication, checkpoints, datasets, the --impl plugin and the waits.

Each builder makes its input in the scratch folder `tmp`, runs the real code path and returns what a
user would see; bench/reliability.py judges it against the entry's expectation.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch


def cli(*argv: str) -> str:
    """`vsbench ARGV` in process -> 'exit N: <first stderr line>' (usage errors are one line)."""
    from bench import cli as vsbench

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = vsbench.main(list(argv))
        except SystemExit as exc:  # argparse
            code = exc.code
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1] if lines else ''}"


def _tiny_model():
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig

    torch.manual_seed(0)
    return Pix2Seq(Pix2SeqConfig.tiny(decoder_layers=1))


def _saved(tmp: Path, change=None, metadata: dict | None = None) -> Path:
    """A tiny checkpoint file, its tensors or metadata changed by `change(tensors, meta)`."""
    from safetensors.torch import save_file

    from reference.pix2seq.checkpoint import save_checkpoint

    path = save_checkpoint(tmp / "model.safetensors", _tiny_model(), metadata)
    if change is not None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
        change(tensors, meta)
        save_file(tensors, str(path), metadata=meta)
    return path


def _load(path: Path, **kwargs):
    from reference.pix2seq.checkpoint import load_checkpoint

    return load_checkpoint(path, **kwargs)


def _retype(dtype):
    def change(tensors, meta):
        key = "decoder.output.weight"
        tensors[key] = (tensors[key] * 100).to(dtype)
    return change


def _nan_weight(tensors, meta):
    tensors["decoder.output.bias"][3] = float("nan")


def _config_field(field: str, value):
    def change(tensors, meta):
        config = json.loads(meta["config"])
        config[field] = value
        meta["config"] = json.dumps(config)
    return change


def _bad_metadata_json(tensors, meta):
    meta["seed"] = "{not json"


def _port_checkpoint_mode(tmp: Path):
    from reference.pix2seq.checkpoint import load_port_checkpoint
    from reference.pix2seq.model import Pix2SeqConfig

    path = tmp / "port.pth"
    torch.save(_tiny_model().state_dict(), path)
    model = load_port_checkpoint(path, Pix2SeqConfig.tiny(decoder_layers=1))
    return f"training={model.training}"


def _coco(tmp: Path, image_entry: dict, pixels: tuple[int, int] = (16, 16)):
    """A one-image COCO folder whose image entry is `image_entry`; returns CocoDetection(...)[0]."""
    import cv2

    from bench.datasets.coco import CocoDetection

    images = tmp / "images"
    images.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images / "a.png"), np.zeros((pixels[1], pixels[0], 3), np.uint8))
    (tmp / "outside.png").write_bytes((images / "a.png").read_bytes())
    data = {"images": [{"id": 7, "file_name": "a.png", "width": 16, "height": 16, **image_entry}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 2, 8, 8], "area": 64.0, "iscrowd": 0}],
            "categories": [{"id": 3, "name": "square"}]}
    (tmp / "instances.json").write_text(json.dumps(data))
    return CocoDetection(images, tmp / "instances.json")[0]


def _replaced_image(tmp: Path) -> str:
    """Generate a tiny dataset, replace one image's bytes (not the manifest): the fingerprint must change."""
    from bench.datasets.synthetic import DatasetPaths, SyntheticConfig, generate_dataset

    paths = generate_dataset(tmp / "data", SyntheticConfig(num_train=2, num_val=2))
    image = next(paths.images_dir("val").glob("*.png"))
    image.write_bytes(next(paths.images_dir("train").glob("*.png")).read_bytes())
    again = DatasetPaths.open(paths.root)
    return f"fingerprint changed={again.fingerprint != paths.fingerprint}, matches manifest={again.matches_manifest()}"


def _results_folder(tmp: Path, text: str) -> str:
    from bench.report import render_reports

    (tmp / "results").mkdir()
    (tmp / "results" / "x.json").write_text(text)
    with contextlib.redirect_stderr(io.StringIO()):
        index = render_reports(tmp)["README.md"]
    return index.split("could not be read and were left out: ", 1)[-1].strip()


def _modified_export(tmp: Path) -> str:
    from bench.publish import verify_artifacts
    from bench.storage import file_sha256

    (tmp / "samples").mkdir()
    export = tmp / "samples" / "b.jsonl"
    export.write_text("{}\n")
    digest = file_sha256(export)
    export.write_text('{"edited": true}\n')
    return "; ".join(verify_artifacts(tmp, {"samples/b.jsonl": digest, "figures/gone.png": digest}))


def _interrupted_publication(tmp: Path) -> str:
    from bench.publish import MARKER, Staging, recover

    staging = Staging(tmp, "b")
    (staging.folder / "results").mkdir()
    (staging.folder / "results" / "b.json").write_text("{}")
    (staging.folder / MARKER).write_text("results/b.json\n")
    recover(tmp, log=lambda message: None)
    return f"published={(tmp / 'results' / 'b.json').is_file()}, staging left={staging.folder.exists()}"


def _failing_benchmark_keeps_good_results(tmp: Path) -> str:
    """A benchmark that publishes once, then fails its check on a second run: the first stays."""
    from bench.registry import register_benchmark, unregister_benchmark
    from bench.results import BenchmarkResult

    state = {"ok": True}

    def run(ctx):
        return BenchmarkResult(benchmark="fault-toy", report="faulttoy", title="t", metrics={"ok": state["ok"]},
                               config={}, seeds={}, sections=[], ok=state["ok"], problems=["check failed"])

    register_benchmark("fault-toy", description="fault test", report="faulttoy")(run)
    try:
        first = cli("run", "fault-toy", "--out", str(tmp), "--no-cache", "--device", "cpu")
        before = (tmp / "results" / "fault-toy.json").read_text()
        state["ok"] = False
        second = cli("run", "fault-toy", "--out", str(tmp), "--no-cache", "--device", "cpu")
        kept = (tmp / "results" / "fault-toy.json").read_text() == before
        return (f"{first.split(':')[0]} then {second.split(':')[0]}; published results kept={kept}; "
                f"failed run kept={(tmp / 'failed' / 'fault-toy' / 'results.json').is_file()}")
    finally:
        unregister_benchmark("fault-toy")


def _sample_ids(tmp: Path, ids, returned) -> str:
    from bench.samples import RunKey, evaluate_samples

    return evaluate_samples(ids, lambda batch: {i: 0 for i in returned(batch)}, key=RunKey("b", "c", "k", "d"))


def _raising_property(tmp: Path) -> str:
    from bench.adapter import family_contracts

    pix2seq = family_contracts()["pix2seq"][0]  # (puts the checkout's cases/ on sys.path)
    from cases.interface import provided_parts

    class Broken:
        @property
        def encode(self):
            raise RuntimeError("broken on read")

    return f"provided={sorted(provided_parts(Broken(), pix2seq))}"


def _import_error_impl(tmp: Path):
    import os
    import sys

    from bench.plugins import load_object

    (tmp / "crashing_impl.py").write_text("raise RuntimeError('my module needs a GPU')\n")
    os.environ["VSBENCH_IMPL_PATH"] = str(tmp)
    try:
        return load_object("crashing_impl:OBJ")
    finally:
        os.environ.pop("VSBENCH_IMPL_PATH", None)
        sys.modules.pop("crashing_impl", None)


def _dist_timeout(tmp: Path):
    import os

    from bench.distributed import timeout_seconds

    os.environ["VSBENCH_DIST_TIMEOUT"] = "soon"
    try:
        return timeout_seconds()
    finally:
        os.environ.pop("VSBENCH_DIST_TIMEOUT", None)


def _render(table):
    from bench.report import render_table

    return render_table(table)


def entries(BadInput) -> list:
    """The harness's faults as `BadInput`s (the class is passed in to keep one definition)."""
    from bench.results import Table

    no_cuda = "CUDA was requested" if not torch.cuda.is_available() else "."
    e = BadInput
    return [
        e("cli-unknown-benchmark", "`vsbench run no-such-benchmark`", "exit 2, one line naming it and the valid names",
          lambda tmp: cli("run", "no-such-benchmark", "--out", str(tmp)), None, r"^exit 2: .*'no-such-benchmark'.*valid names"),
        e("cli-bad-device", "`vsbench run sigma --device tpu`", "exit 2 naming the device and the choices",
          lambda tmp: cli("run", "sigma", "--device", "tpu", "--out", str(tmp)), None, r"^exit 2: .*'tpu'.*--device auto"),
        e("cli-cuda-without-gpu", "`--device cuda` on a machine without CUDA", "exit 2 with the fix (--device cpu)",
          lambda tmp: cli("run", "sigma", "--device", "cuda", "--out", str(tmp)) if not torch.cuda.is_available()
          else "exit 2: CUDA present", None, rf"^exit 2: .*{no_cuda}"),
        e("cli-out-is-a-file", "`--out` naming an existing file", "exit 2: is a file, not a folder",
          lambda tmp: (tmp / "f").write_text("x") and cli("run", "sigma", "--out", str(tmp / "f")), None,
          r"^exit 2: .*is a file"),
        e("cli-out-unusable", "`--out` below a file (cannot be created)", "exit 2: cannot be used, before any work",
          lambda tmp: (tmp / "f").write_text("x") and cli("run", "sigma", "--out", str(tmp / "f" / "sub")), None,
          r"^exit 2: .*cannot be used"),
        e("cli-limit-negative", "`--limit -190`", "exit 2 (argparse): N must be >= 1 (was: 10 images, '-190' in the report)",
          lambda tmp: cli("run", "detection", "--limit", "-190"), None, r"^exit 2: .*--limit.*must be >= 1"),
        e("cli-limit-zero", "`--limit 0`", "exit 2 (was: every image evaluated)",
          lambda tmp: cli("run", "detection", "--limit", "0"), None, r"^exit 2: .*--limit.*must be >= 1"),
        e("cli-diff-folder-without-benchmark", "`vsbench diff A B` on two reports folders", "exit 2 listing the exports",
          lambda tmp: [(tmp / r / "samples").mkdir(parents=True) for r in "ab"] and cli("diff", str(tmp / "a"), str(tmp / "b")),
          None, r"^exit 2: .*--benchmark"),
        e("corrupt-cache", "a --cache file that is not SQLite", "exit 2 naming the file, delete it or --no-cache",
          lambda tmp: (tmp / "c.sqlite").write_bytes(b"garbage" * 500) and cli(
              "run", "sigma", "--out", str(tmp / "r"), "--cache", str(tmp / "c.sqlite")), None,
          r"^exit 2: vsbench: error: --cache .*c\.sqlite: not a readable vsbench cache.*--no-cache"),
        e("cache-is-a-folder", "a --cache path that is a folder", "exit 2 naming it",
          lambda tmp: cli("run", "sigma", "--out", str(tmp / "r"), "--cache", str(tmp)), None, r"^exit 2: vsbench: error: --cache .*is a folder"),
        e("malformed-results-json", "a results JSON in --out cut in the middle", "left out with its name; other reports rendered",
          lambda tmp: _results_folder(tmp, '{"benchmark": "x", "met'), None, r"x\.json: skipped.*malformed JSON"),
        e("results-json-extra-key", "a results JSON with an unknown field", "left out, naming the file and the field",
          lambda tmp: _results_folder(tmp, '{"benchmark": "x", "surprise": 1}'), None, r"x\.json.*unknown fields \['surprise'\]"),
        e("export-modified-after-run", "a per-sample export edited after its run, a figure deleted",
          "the report names both (sha256 in the results JSON)", _modified_export, None,
          r"figures/gone\.png is missing; samples/b\.jsonl was modified after this run"),
        e("publication-interrupted", "a run killed after its PUBLISH marker, before the renames",
          "the next run completes the publication", _interrupted_publication, None, r"published=True, staging left=False"),
        e("failed-check-keeps-results", "a benchmark whose check fails after a good run (was: the good results replaced "
          "by a stub)", "exit 1; published results untouched; the failed run kept in failed/",
          _failing_benchmark_keeps_good_results, None, r"exit 0 then exit 1; published results kept=True; failed run kept=True"),
        e("checkpoint-int64-weights", "a checkpoint whose output weight is int64 (was: cast silently, AP 0)",
          "CheckpointError naming the key and dtype", lambda tmp: _load(_saved(tmp, _retype(torch.int64))), ValueError,
          r"non-floating-point weights \[decoder\.output\.weight \(torch\.int64\)\]"),
        e("checkpoint-int8-weights", "int8 weights", "CheckpointError naming the key and dtype",
          lambda tmp: _load(_saved(tmp, _retype(torch.int8))), ValueError, r"decoder\.output\.weight \(torch\.int8\)"),
        e("checkpoint-bool-weights", "bool weights", "CheckpointError naming the key and dtype",
          lambda tmp: _load(_saved(tmp, _retype(torch.bool))), ValueError, r"decoder\.output\.weight \(torch\.bool\)"),
        e("checkpoint-nan-weights", "a NaN in the output bias", "CheckpointError naming the key",
          lambda tmp: _load(_saved(tmp, _nan_weight)), ValueError, r"NaN or inf \[decoder\.output\.bias\]"),
        e("checkpoint-metadata-not-json", "a metadata field that is not JSON", "CheckpointError naming file and field",
          lambda tmp: _load(_saved(tmp, _bad_metadata_json)), ValueError, r"model\.safetensors: metadata field 'seed' is not valid JSON"),
        e("checkpoint-decoder-heads-0", "config with decoder_heads=0 (was: ZeroDivisionError)", "CheckpointError naming the field",
          lambda tmp: _load(_saved(tmp, _config_field("decoder_heads", 0))), ValueError, r"decoder_heads must be an integer in \[1,"),
        e("checkpoint-max-len-1e9", "config with max_len=1e9 (was: a 512 GB allocation attempted)", "CheckpointError naming the field",
          lambda tmp: _load(_saved(tmp, _config_field("max_len", 10 ** 9))), ValueError, r"max_len must be an integer in \[1, 65536\]"),
        e("checkpoint-unknown-config-field", "config with a field this version does not know", "CheckpointError naming it",
          lambda tmp: _load(_saved(tmp, _config_field("rope", True))), ValueError, r"unknown Pix2SeqConfig fields \['rope'\]"),
        e("checkpoint-cuda-on-cpu", "map_location='cuda' on a machine without CUDA (was: 'not a readable safetensors file')",
          "CheckpointError saying CUDA is not available", lambda tmp: _load(_saved(tmp), map_location="cuda")
          if not torch.cuda.is_available() else (_ for _ in ()).throw(ValueError("CUDA is not available: n/a (GPU)")),
          ValueError, r"CUDA is not available"),
        e("checkpoint-missing-file", "a checkpoint path that does not exist", "FileNotFoundError naming it",
          lambda tmp: _load(tmp / "nope.safetensors"), FileNotFoundError, r"nope\.safetensors"),
        e("port-checkpoint-train-mode", "a port state_dict loaded with load_port_checkpoint (was: returned in training "
          "mode, logits 2.09 away)", "no error; the model in eval mode", _port_checkpoint_mode, None, r"training=False"),
        e("coco-file-name-outside", "an image file_name of '../outside.png'", "ValueError: must stay inside the images folder",
          lambda tmp: _coco(tmp, {"file_name": "../outside.png"}), ValueError, r"file_name '\.\./outside\.png' must be a relative path inside"),
        e("coco-size-mismatch", "JSON says 16 x 16, the file is 20 x 12", "ValueError naming both sizes",
          lambda tmp: _coco(tmp, {}, pixels=(20, 12)), ValueError, r"is 20 x 12 px but .* says 16 x 16"),
        e("coco-width-none", "an image entry with width null", "ValueError naming the image and field",
          lambda tmp: _coco(tmp, {"width": None}), ValueError, r"image id 7: width must be a positive whole number"),
        e("dataset-image-replaced", "one generated image's bytes replaced, the manifest kept (was: cache reused)",
          "no error; a new fingerprint (the cache misses)", _replaced_image, None,
          r"fingerprint changed=True, matches manifest=False"),
        e("impl-raises-on-import", "an --impl module that raises on import", "ImplementationError naming module and error",
          _import_error_impl, Exception, r"cannot import module 'crashing_impl': RuntimeError: my module needs a GPU"),
        e("impl-missing-attribute", "--impl bench.implementations:NOPE", "ImplementationError naming the attribute",
          lambda tmp: __import__("bench.plugins", fromlist=["x"]).load_object("bench.implementations:NOPE"), Exception,
          r"has no attribute 'NOPE'"),
        e("impl-part-raising-property", "a part that is a property raising on read (was: collection crash, exit 3)",
          "no error at collection: the part counts as provided, the cases needing it fail naming it",
          _raising_property, None, r"provided=\['encode'\]"),
        e("samples-wrong-ids", "a compute function returning ids of another batch", "ValueError naming both",
          lambda tmp: _sample_ids(tmp, [1, 2], lambda b: [x + 10 for x in b]), ValueError, r"compute returned ids \[11, 12\]"),
        e("samples-duplicate-ids", "duplicate sample ids", "ValueError",
          lambda tmp: _sample_ids(tmp, [1, 1], lambda b: b), ValueError, r"sample ids must be unique"),
        e("dist-timeout-not-a-number", "VSBENCH_DIST_TIMEOUT=soon", "ValueError naming the variable",
          _dist_timeout, ValueError, r"VSBENCH_DIST_TIMEOUT='soon'"),
        e("report-table-kinds", "a report table with 1 column kind for 2 columns", "ValueError naming the table",
          lambda tmp: _render(Table(["a", "b"], [[1, 2]], title="t", kinds=["count"])), ValueError, r"table 't': 1 kinds for 2 columns"),
        e("report-unknown-kind", "a column kind 'speed'", "ValueError listing the kinds",
          lambda tmp: _render(Table(["a"], [[1.5]], kinds=["speed"])), ValueError, r"unknown column kind 'speed'"),
    ]
