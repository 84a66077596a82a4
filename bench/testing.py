"""Test-suite support shared by tests/ and cases/: hypothesis profiles.

`ci`: derandomized, bounded examples, no deadline (selected when CI is set or HYPOTHESIS_PROFILE=ci);
`dev`: random, more examples. HYPOTHESIS_PROFILE overrides the choice.
"""

from __future__ import annotations

import os


def load_hypothesis_profile() -> str:
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=150, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    # known-bad runs: failures are expected, so shrinking them only costs time
    settings.register_profile("ci-noshrink", parent=settings.get_profile("ci"),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name
