"""One BLIP pre-training step on a single process (salesforce/BLIP models/blip_pretrain.py: `_dequeue_and_enqueue`
calls `concat_all_gather`, which asks torch.distributed for the world size without a process group): a one-GPU or
CPU run must not need one, and its three losses are finite."""

import pytest

from cases.interface.albef import single_process_step
from cases.interface.blip import TINY_CONFIG

pytestmark = [pytest.mark.blip,
              pytest.mark.case(stands_for="concat_all_gather without a process group in the BLIP step",
                               stage="one BLIP training step")]


def test_a_training_step_runs_without_a_process_group(api):
    single_process_step(api, "build_blip", "blip_losses", TINY_CONFIG, ("itc", "itm", "lm"))
