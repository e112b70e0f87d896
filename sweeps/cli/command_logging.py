"""The logging every command sets up: our warnings in one line each, the libraries' chatter off."""

from __future__ import annotations

import logging
import os


def setup_command_logging() -> None:
    # Before MLflow is imported (it reads these once) and inherited by the
    # worker processes: no MLflow INFO lines or download bars between ours.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import optuna

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # logs each refused database write with a traceback; the error is reported once, in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    one_fault_line = StoreFaultOnce()
    for handler in logging.root.handlers:
        handler.addFilter(one_fault_line)


class StoreFaultOnce(logging.Filter):
    """A warning that carries a database error (SQL statement, parameters, SQLAlchemy's link) is shown on
    one line, and not at all when an earlier warning already said that error: a store that turns read-only
    mid-sweep is one line, not every failing write's statement."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        from numpynet.sweeps.recording.store import database_reason, without_sql

        text = record.getMessage()
        if "[SQL: " in text or "(Background on this error" in text:
            reason = database_reason(text)
            if reason and any(reason in earlier for earlier in self.shown):
                return False
            text = without_sql(text)
            record.msg, record.args = text, None
        self.shown = [*self.shown[-49:], text]
        return True
