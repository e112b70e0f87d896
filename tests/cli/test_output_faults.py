"""Issue 23, item 11 (output): a store that turns read-only mid-sweep is one line, not pages of SQL; a standard
output that refuses writes is one line, not a traceback.

Left to SQLAlchemy, a read-only ``mlflow.db`` mid-sweep prints 58 lines: each failing
write's warning with SQLAlchemy's statement, its parameters and a link. The
store is made to refuse writes from its 40th on, exactly as SQLite refuses
them (``sqlite3.OperationalError`` wrapped by SQLAlchemy), by a
``sitecustomize`` in the command's process: a real sweep, a real fault.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers.commands import run_command

READ_ONLY_AFTER = """
import sqlite3
import sqlalchemy.exc
import mlflow.store.tracking.sqlalchemy_store as store

calls = [0]

def refusing(method):
    def write(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] > {after}:
            raise sqlalchemy.exc.OperationalError("INSERT INTO metrics (key, value, run_uuid) VALUES (?, ?, ?)",
                                                  ("val_accuracy", 0.5, "0123abcd"),
                                                  sqlite3.OperationalError("attempt to write a readonly database"))
        return method(self, *args, **kwargs)
    return write

for name in ("create_run", "log_batch", "update_run_info", "set_tag", "log_param", "log_metric"):
    setattr(store.SqlAlchemyStore, name, refusing(getattr(store.SqlAlchemyStore, name)))
"""


@pytest.mark.slow
def test_a_store_that_turns_read_only_mid_sweep_is_one_line(store: Path) -> None:
    hook = store / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(READ_ONLY_AFTER.replace("{after}", "40"))
    proc = run_command(
        "numpynet-sweep",
        ["sweep.n_trials=30", "train.epoch=30", "sweep.log_study_plots=false"],
        store,
        tracking_uri=None,
        env={"PYTHONPATH": f"{hook}:{Path(__file__).resolve().parents[2]}"},
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line and not line.startswith("trial ")]  # progress
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("numpynet-sweep: error: stopped: a fault of the machine or a store during trial ")
    assert "attempt to write a readonly database" in lines[0]
    assert "[SQL:" not in proc.stderr and "sqlalche.me" not in proc.stderr


def test_a_database_errors_warning_is_one_line_and_said_once() -> None:
    from numpynet.sweeps.cli.command_logging import StoreFaultOnce

    sql = (
        "(sqlite3.OperationalError) attempt to write a readonly database\n[SQL: INSERT INTO tags (key) "
        "VALUES (?)]\n[parameters: ('a',)]\n(Background on this error at: https://sqlalche.me/e/20/e3q8)"
    )
    once = StoreFaultOnce()

    def record(msg: str, *args) -> logging.LogRecord:
        return logging.LogRecord("numpynet.sweeps.x", logging.WARNING, __file__, 1, msg, args, None)

    first = record("could not end run %s: %s", "r1", sql)
    assert once.filter(first)
    assert first.getMessage() == "could not end run r1: (sqlite3.OperationalError) attempt to write a readonly database"
    assert not once.filter(record("could not end parent run %s: %s", "r2", sql))  # the same fault, said already
    assert once.filter(record("an unrelated warning"))


def test_a_failed_write_stays_a_store_fault_however_it_is_re_raised() -> None:
    """The recorder's error is a StoreError that keeps the database error it was caused by, even through
    ``raise ... from None`` on its way up (trainer.py): the fault is not counted as a config error."""
    from numpynet.sweeps.recording.recorder import Recorder
    from numpynet.sweeps.search import failures

    recorder = Recorder("sqlite:///unused.db")
    recorder._errors.append(OSError(30, "Read-only file system"))
    try:
        try:
            recorder.raise_errors()
        except Exception as exc:
            raise exc from None
    except Exception as exc:
        assert failures.classify(exc) == failures.FAULT
        assert str(exc) == "writing to the MLflow store failed: Read-only file system"


@pytest.mark.slow
@pytest.mark.parametrize(
    "prog, args",
    [
        ("numpynet-sweep", ["sweep.n_trials=1", "train.epoch=2", "sweep.log_study_plots=false"]),
        ("numpynet-status", []),
    ],
)
def test_a_standard_output_that_refuses_writes_is_one_line(store: Path, prog: str, args: list[str]) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from tests.helpers.commands import communicate_or_kill, start_command

    if prog == "numpynet-status":  # a study to report on
        journal = store / "mlruns" / "optuna" / "journal.log"
        journal.parent.mkdir(parents=True)
        optuna.create_study(study_name="digits-default", storage=JournalStorage(JournalFileBackend(str(journal))))
    with open("/dev/full", "w") as full:  # every write fails: "No space left on device"
        proc = start_command(prog, args, store, tracking_uri=None, stdout=full)
        _, err = communicate_or_kill(proc, 300)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if line and not line.startswith(("trial ", "WARNING"))]
    assert lines == [f"{prog}: cannot write to standard output: No space left on device"], err
