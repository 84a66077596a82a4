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


def test_a_failing_rank_stops_every_rank_within_seconds(tmp_path, random_checkpoint):
    from bench.faults import failing_rank_run

    result = failing_rank_run(tmp_path, env=random_checkpoint)
    assert result["exit"] != 0 and result["names_failing_rank"], result["log_tail"]
    assert result["seconds_after_failure"] is not None and result["seconds_after_failure"] < 30
    assert not result["published"]


def test_a_code_change_invalidates_the_cache(tmp_path, random_checkpoint):
    from bench.faults import code_change_run

    result = code_change_run(tmp_path, env=random_checkpoint)
    assert result["ok"], result["runs"]


def test_a_run_killed_while_publishing_is_rolled_forward(tmp_path, random_checkpoint):
    from bench.faults import kill_during_publish_run

    result = kill_during_publish_run(tmp_path, env=random_checkpoint)
    assert result["killed_exit"] == -9 and result["staged_after_kill"] == 1
    assert result["rolled_forward"] and result["artifact_problems"] == [] and not result["staging_left"]


def test_a_crashing_stage_keeps_the_other_stages(tmp_path):
    from bench.faults import empty_model_run

    result = empty_model_run(tmp_path)
    assert result["exit"] == 0 and result["published"], result["log_tail"]
    assert result["reference_AP"] == 0.0 and result["stages_that_raised"]


def test_a_hung_impl_part_times_out_and_every_suite_is_reported(tmp_path):
    from bench.faults import hung_impl_run

    result = hung_impl_run(tmp_path)
    assert result["exit"] == 0, result["log_tail"]
    assert result["suites_reported"] == ["hung_impl:HUNG", "reference"]
    assert result["hung_cases_timed_out"] >= 1 and result["message_names_part"]
