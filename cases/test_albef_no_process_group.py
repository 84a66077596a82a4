"""Single-process training (salesforce/ALBEF and BLIP `concat_all_gather`: `torch.distributed.get_world_size()`
without checking that a process group exists): every enqueue gathers the momentum keys, so one-GPU or CPU runs
crash with "Default process group has not been initialized" (ALBEF #139; the same helper in LAVIS, #537)."""

import pytest
import torch

from cases.interface.albef import TINY_CONFIG, single_process_step

pytestmark = [pytest.mark.albef,
              pytest.mark.case(stands_for="concat_all_gather without a process group (ALBEF #139)",
                               stage="cross-process gather / one ALBEF training step")]


def test_gather_without_a_process_group_returns_the_input(api):
    x = torch.randn(3, 4)
    torch.testing.assert_close(torch.as_tensor(api.gather_keys(x)), x)


def test_a_training_step_runs_without_a_process_group(api):
    single_process_step(api, "build_albef", "albef_losses", TINY_CONFIG, ("itc", "itm", "mlm"))
