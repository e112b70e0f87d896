"""Issue 23, item 3: ``sweep.storage`` naming something that is not an Optuna journal is refused, untouched.

What the tests guard against: a ``results.json`` written by ``json.dump`` (no
trailing newline) "repaired" as a torn journal and replaced with exit 0, a
JSON-lines file truncated, ``/tmp`` and ``/dev/null`` ending in tracebacks, and
``numpynet-status sweep.storage=/etc/passwd`` advising to move ``/etc/passwd``.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from tests.helpers.commands import run_command


def _json_dump(folder: Path) -> Path:
    path = folder / "results.json"
    with open(path, "w") as f:
        json.dump({"accuracy": 0.97, "runs": [1, 2, 3]}, f)  # no trailing newline: a "torn" last line
    return path


def _json_lines(folder: Path) -> Path:
    path = folder / "events.jsonl"
    path.write_text('{"event": "start"}\n{"event": "epoch", "n": 1}\n{"event": "ep')  # a partial last line
    return path


def _tree(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("make", [_json_dump, _json_lines], ids=["json-dump", "json-lines"])
def test_the_sweep_refuses_a_file_that_is_not_a_journal_and_changes_nothing(store: Path, make) -> None:
    target = make(store)
    before = _tree(store)
    proc = run_command(
        "numpynet-sweep", [f"sweep.storage={target}", "sweep.n_trials=1", "train.epoch=2"], store, tracking_uri=None
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"numpynet-sweep: error: sweep.storage='{target}' is not an Optuna study journal (its "
        "first line is not a journal operation), so it is left as it is; point sweep.storage "
        "at a new file or at a study's journal\n"
    )
    assert _tree(store) == before  # the file as it was, no backup beside it, no journal, no run


@pytest.mark.parametrize(
    "target, says",
    [
        ("/etc/passwd", "is not an Optuna study journal"),
        ("/tmp", "is a directory, not a study journal"),
        ("/dev/null", "is a device or special file, not a study journal"),
        ("JSON", "is not an Optuna study journal"),
        ("JSONL", "is not an Optuna study journal"),
    ],
)
def test_status_refuses_what_is_not_a_journal_in_one_line(tmp_path: Path, monkeypatch, capsys, target, says) -> None:
    from numpynet.sweeps.cli.status import status_main

    monkeypatch.chdir(tmp_path)
    if target in ("JSON", "JSONL"):
        target = str((_json_dump if target == "JSON" else _json_lines)(tmp_path))
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        status_main([f"sweep.storage={target}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"numpynet-status: error: sweep.storage='{target}' {says}") and err.count("\n") == 1
    assert " mv " not in err and "Traceback" not in err
    assert _tree(tmp_path) == before


def test_a_real_journal_torn_at_its_first_write_is_still_accepted(tmp_path: Path) -> None:
    """The check does not refuse a journal: one made by Optuna, and one whose very first line was cut short."""
    from numpynet.sweeps.search import storage

    whole = tmp_path / "whole.log"
    optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(whole))))
    storage.make_storage(str(whole), repair=False)
    first_line = whole.read_bytes().split(b"\n")[0]
    torn = tmp_path / "torn.log"
    torn.write_bytes(first_line[:20])
    storage.make_storage(str(torn))  # repaired: the cut write is moved aside
    assert torn.read_bytes() == b"" and len(list(tmp_path.glob("torn.log.torn-*"))) == 1
