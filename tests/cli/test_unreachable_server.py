"""Every command names a tracking server that does not answer, in seconds, rightly.

Left to MLflow's HTTP retries, ``numpynet-train tracking.uri=http://127.0.0.1:1``
would wait about 4 min and then blame the artifact store, and
``numpynet-reproduce`` as long and then say "no run". Fast is checked
without a stopwatch: MLflow's retries log "Retrying ...", and no answer to the
one /health probe ends the command before any of them; the test's timeout
(two minutes) is far below those four.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers.commands import run_command
from tests.helpers.services import free_port


def _commands(uri: str) -> dict[str, tuple[str, list[str]]]:
    return {
        "train": ("numpynet-train", [f"tracking.uri={uri}", "train.epoch=2"]),
        "reproduce": ("numpynet-reproduce", ["0123456789abcdef0123456789abcdef", "--tracking-uri", uri]),
        "sweep": ("numpynet-sweep", [f"tracking.uri={uri}", "sweep.n_trials=1", "train.epoch=2"]),
    }


def _check(proc, prog: str, uri: str, why: str, folder: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    prefix = f"{prog}: error: " if prog == "numpynet-sweep" else f"{prog}: "
    assert proc.stderr.endswith(
        f"{prefix}cannot reach the MLflow tracking server at {uri}: {why}; start it "
        "(mlflow server --host ... --port ...) or fix tracking.uri\n"
    ), proc.stderr
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert "artifact" not in proc.stderr and "no run" not in proc.stderr
    assert not (folder / "mlruns").exists()  # nothing created


@pytest.mark.parametrize("which", ["train", "reproduce", "sweep"])
def test_a_closed_port_is_named_at_once_by_every_command(tmp_path: Path, which: str) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    prog, args = _commands(uri)[which]
    proc = run_command(prog, args, tmp_path, tracking_uri=None, timeout=120)
    _check(proc, prog, uri, "connection refused", tmp_path)


@pytest.mark.slow
def test_a_server_that_accepts_but_never_answers_is_named_after_the_probe_timeout(tmp_path: Path) -> None:
    with socket.socket() as listener:  # the kernel completes the handshake; nobody ever reads or answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        proc = run_command(
            "numpynet-train", [f"tracking.uri={uri}", "train.epoch=2"], tmp_path, tracking_uri=None, timeout=120
        )
    _check(proc, "numpynet-train", uri, "connected, but /health gave no answer within 5 s", tmp_path)
