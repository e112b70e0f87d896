"""Issue 23, item 10: a network whose parameters cannot fit in memory is refused before any study or run.

Unchecked, ``network.hidden=[100000,100000]`` would pass the sweep's pre-checks,
create the study and its parent run, then fail as a fault (``MemoryError``
... 74.6 GiB) with advice to resume; ``numpynet-train`` would say "internal
error" after creating a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.commands import run_command

HUGE = "network.hidden=[100000,100000]"


@pytest.mark.parametrize("prog", ["numpynet-train", "numpynet-sweep"])
def test_an_oversized_network_is_refused_in_one_line_and_nothing_is_created(tmp_path: Path, prog: str) -> None:
    proc = run_command(prog, [HUGE, "train.epoch=2"], tmp_path, tracking_uri=None, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    prefix = f"{prog}: error: " if prog == "numpynet-sweep" else f"{prog}: "
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    # digits: 64 features, 10 classes; Adam keeps 3 arrays of the parameters' size besides weights and gradients
    assert last.startswith(
        f"{prefix}network.hidden=[100000, 100000] is too large for this machine: 10,007,600,010 "
        f"parameters need 372.8 GiB for the weights, gradients and adam state (float64), more "
        f"than its {gib:.1f} GiB of memory"
    ), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # no study, no run


def test_the_estimate_counts_weights_biases_and_each_optimizers_state() -> None:
    from numpynet.sweeps.training.network_from_config import parameter_bytes

    sizes = [64, 100, 10]
    count = 64 * 100 + 100 * 10 + 100 + 10
    assert parameter_bytes(sizes, "float64", "gd") == (count, count * 8 * 2)
    assert parameter_bytes(sizes, "float32", "adam") == (count, count * 4 * 5)
    assert parameter_bytes(sizes, "float64", "momentum") == (count, count * 8 * 3)
