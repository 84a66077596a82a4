"""Real `vsbench run detection` subprocesses (on a random tiny checkpoint written here): a run SIGKILLed
mid-way resumes with only the missing samples and ends with the same metrics; torchrun with 2 and 3
gloo processes (37 samples: not divisible; 3 ranks with 2 samples: one rank empty) equals one process."""

import pytest
import torch

from bench.faults import distributed_run, interrupted_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    from reference.pix2seq.checkpoint import save_checkpoint
    from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random_tiny.safetensors"
    save_checkpoint(path, Pix2Seq(Pix2SeqConfig.tiny()), {"seed": 0, "command": "random init (test)"})
    return {"VSBENCH_PIX2SEQ_CHECKPOINT": str(path)}


def test_killed_run_resumes_to_the_same_metrics(tmp_path, random_checkpoint):
    result = interrupted_run(tmp_path, limit=40, kill_after=1, env=random_checkpoint)
    assert result["uninterrupted_exit"] == 0 and result["resumed_exit"] == 0, result["log_tail"]
    assert result["killed_exit"] == -9
    assert result["half_written_after_kill"] == [] and not result["report_written_before_kill"]
    assert (result["resumed_from_cache"], result["resumed_computed"]) == (16, 24)
    assert result["metrics_equal"] and result["samples_equal"]


@pytest.mark.parametrize("nproc, limit, weights", [(2, 37, "shipped"), (3, 2, "random")])
def test_torchrun_equals_one_process(tmp_path, random_checkpoint, nproc, limit, weights):
    """The shipped checkpoint stops rows at EOS at different steps, so a batch's PAD tail depends on its
    other rows; per-sample outputs must not (they are stored without it)."""
    result = distributed_run(tmp_path, nproc, limit=limit, env=random_checkpoint if weights == "random" else {})
    assert result["single_exit"] == 0 and result["torchrun_exit"] == 0, result["log_tail"]
    assert result["metrics_equal"] and result["samples_match"]
