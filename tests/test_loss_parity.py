"""Loss parity (issue 14): with the same seeds, the first 50 training losses of a real `main.py fit` equal the
stored ones bit for bit, so a refactor that claims to preserve behaviour is checked, not assumed
(torchtitan's loss-comparison habit). The assets were recorded before the data-agnostic redesign; see
tests/support/training_losses.py for when and how to regenerate one. A different CPU instruction set
(AVX2 vs AVX-512 kernels) sums in another order, so the comparison is skipped there, not loosened."""
import json

import pytest

from tests.support.training_losses import ASSETS, CASES, machine, training_losses


def _check(case, tmp_path):
    stored = json.loads((ASSETS / CASES[case]["asset"]).read_text())
    if stored["cpu_capability"] != machine()["cpu_capability"]:
        pytest.skip(f"losses recorded with {stored['cpu_capability']} kernels, this machine uses "
                    f"{machine()['cpu_capability']}")
    losses = training_losses(case, tmp_path)
    assert len(losses) == stored["steps"]
    first_difference = next((i for i, (a, b) in enumerate(zip(losses, stored["losses"])) if a != b), None)
    assert first_difference is None, (f"step {first_difference}: loss {losses[first_difference]!r} != stored "
                                      f"{stored['losses'][first_difference]!r}")


def test_smoke_config_first_50_losses_are_bit_identical(tmp_path):
    _check("smoke", tmp_path)


@pytest.mark.slow
def test_demo_config_first_50_losses_are_bit_identical(tmp_path):
    # No learning check: the demo's motion prediction starts at the copy of the reference, whose x0-space
    # loss (0.047) is already low and is flat over 50 steps (it falls over the run: val MSE in
    # bench/results/curves); the velocity recipe's losses fell 2.05 -> 0.99 over the same 50 steps.
    _check("demo", tmp_path)
