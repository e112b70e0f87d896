"""A YAML alias bomb in any file the commands read is refused in one line, at once.

Nine levels of anchors, each repeating the level below nine times, stand for
9**9 values in under 700 bytes; expanded, one grows past gigabytes for minutes.
Also: a signal during a long parse stops the command at once instead of at an
epoch boundary that has not come.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers.commands import communicate_or_kill, run_command, start_command


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_a_study_file_with_aliases_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    from numpynet.sweeps.errors import UserError
    from numpynet.sweeps.search.settings import load_sweep_config

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb() + "study_name: *a8\n")
    with pytest.raises(UserError) as caught:
        load_sweep_config(str(bomb))
    text = str(caught.value)
    assert f"{bomb}: line 2: YAML alias *a0 refused" in text and "\n" not in text


def test_the_sweep_command_refuses_an_alias_bomb_and_creates_nothing(store: Path) -> None:
    (store / "bomb.yaml").write_text(alias_bomb() + "study_name: *a8\n")
    before = _files(store)
    proc = run_command("numpynet-sweep", ["sweep=bomb.yaml"], store, tracking_uri=None, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "bomb.yaml: line 2: YAML alias *a0 refused" in proc.stderr
    assert _files(store) == before


def test_a_logged_config_with_aliases_is_refused_by_reproduce(mlflow_store: str, tmp_path: Path, capsys) -> None:
    from numpynet.sweeps.cli.reproduce import reproduce_main

    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("planted")
    run_id = client.create_run(experiment).info.run_id
    upload = tmp_path / "upload" / "config.yaml"
    upload.parent.mkdir()
    upload.write_text(alias_bomb() + "train:\n  epoch: 3\ntracking:\n  run_name: *a8\n")
    client.log_artifact(run_id, str(upload))

    assert reproduce_main([run_id]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"numpynet-reproduce: run {run_id}'s config.yaml artifact: line 2: YAML alias *a0 refused; "
        "numpynet reads no anchors' aliases (a few lines of them can stand for billions of values): "
        "write the values out; it cannot be reproduced from this artifact\n"
    )
    assert len(client.search_runs([experiment])) == 1  # nothing trained


def test_a_config_composed_from_the_users_folder_with_aliases_is_refused(tmp_path: Path) -> None:
    """``numpynet-train --config-dir . --config-name best_config``, as docs/sweeps.md retrains a best config."""
    (tmp_path / "best_config.yaml").write_text(
        "defaults:\n  - _self_\n" + alias_bomb() + "tracking:\n  run_name: *a8\n"
    )
    before = _files(tmp_path)
    proc = run_command(
        "numpynet-train",
        ["--config-dir", str(tmp_path), "--config-name", "best_config"],
        tmp_path,
        tracking_uri=None,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"numpynet-train: {tmp_path / 'best_config.yaml'}: line 4: YAML alias *a0 refused; "
        "numpynet reads no anchors' aliases (a few lines of them can stand for billions of "
        "values): write the values out\n"
    )
    assert _files(tmp_path) == before  # no ./mlruns, no run


@pytest.mark.slow
def test_sigterm_while_a_logged_config_is_parsed_stops_reproduce_at_once(mlflow_store: str, tmp_path: Path) -> None:
    """A 6 MB logged config takes minutes to parse: the signal must not wait for it (nor for an epoch)."""
    client = MlflowClient(mlflow_store)
    run_id = client.create_run(client.create_experiment("big")).info.run_id
    upload = tmp_path / "upload" / "config.yaml"
    upload.parent.mkdir()
    upload.write_text("train:\n  big: [" + ", ".join(["1"] * 2_000_000) + "]\n")
    client.log_artifact(run_id, str(upload))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = start_command("numpynet-reproduce", [run_id], tmp_path, env={"TMPDIR": str(scratch)}, cold=True)
    # The artifact is downloaded into a temporary folder (signals act at once there), read, and the folder is
    # removed before the bytes are parsed: the folder's coming and going says the parse has begun. The file
    # itself lives for a millisecond or so, too short to be seen reliably on a quiet machine.
    seen = parsing = False
    while proc.poll() is None and not parsing:
        present = any(scratch.glob("numpynet-reproduce-*"))
        seen = seen or present
        parsing = seen and not present
        time.sleep(0.002)
    assert parsing, f"the command ended before it read the config (folder seen: {seen}): {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    _, err = communicate_or_kill(proc, 60)  # the parse alone takes minutes
    assert proc.returncode == 128 + signal.SIGTERM and err.strip().endswith("numpynet-reproduce: terminated"), err
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_at_once_acts_on_a_signal_immediately_and_deferred_blocks_wait(monkeypatch) -> None:
    import os

    from numpynet.sweeps import interrupt

    previous = interrupt.install()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            with interrupt.at_once():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs between bytecodes
                    time.sleep(0.001)
                pytest.fail("the signal did not stop the block")
        assert caught.value.args == (signal.SIGTERM,)
        interrupt.install()
        with interrupt.at_once():
            with interrupt.at_once(False):  # a task inside composition: its own safe points decide
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            assert interrupt.requested() == signal.SIGTERM
            with pytest.raises(KeyboardInterrupt):
                with interrupt.at_once():  # the signal that came before the block acts as it starts
                    pytest.fail("not reached")
    finally:
        interrupt.restore(previous)
