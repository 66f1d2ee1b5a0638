"""SIGKILL a training run at named points, resume, and require an intact, bitwise-identical result."""

from __future__ import annotations

import killharness as kh
import pytest


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in this process (bitwise equal to a subprocess run: same code, one thread)."""
    out = tmp_path_factory.mktemp("reference") / "exp"
    assert kh.run_in_process([*kh.ARGS, "--output_dir", str(out)]) == 0
    kh.assert_intact(out, finished=True)
    return kh.snapshot(out)


def test_three_kills_in_one_experiment(tmp_path, reference):
    """Torn checkpoint write, kill during an evaluation, kill between steps of the second seed."""
    got = kh.kill_and_resume(tmp_path / "exp", [("write:ckpt", 2), ("eval", 2), ("step", 5)], finish_in_process=True)
    kh.assert_same_run(got, reference)


@pytest.mark.slow
@pytest.mark.parametrize("point,n", kh.KILL_POINTS, ids=[f"{p}:{n}" for p, n in kh.KILL_POINTS])
def test_kill_at_point_then_resume(tmp_path, reference, point, n):
    got = kh.kill_and_resume(tmp_path / "exp", [(point, n)])
    kh.assert_same_run(got, reference)


def test_harness_detects_a_one_ulp_weight_change(reference):
    """The comparison can fail: the reference with one weight moved by one ulp is rejected."""
    import copy

    import torch

    altered = copy.deepcopy(reference)
    model = next(iter(altered["seeds"].values()))["model"]
    name = next(k for k, v in model.items() if v.is_floating_point())
    flat = model[name].view(-1)
    flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf")))
    with pytest.raises(AssertionError, match="differs"):
        kh.assert_same_run(altered, reference)
