"""Fail fast: check the study storage and the MLflow tracking store before any training.

A wrong connection string or a server that is not running must cost the user
seconds and one clear line naming the URI (password masked), not a stack
trace after MLflow's two minutes of HTTP retries or after the first trial.
"""

from __future__ import annotations

import os
from pathlib import Path

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.recording.store import check_tracking_server
from numpynet.sweeps.search import storage

DB_PROBE_TIMEOUT = 10  # seconds to connect to a database


def check_storage(url: str) -> None:
    """The Optuna storage at ``url`` can be opened (journal folder writable, database reachable)."""
    if not storage.is_rdb(url):
        from numpynet.sweeps.search.journal import refuse_what_is_not_a_journal

        refuse_what_is_not_a_journal(url)
        folder = Path(url).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the study storage folder {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"cannot write the study storage {url}: {folder} is not writable")
        return
    storage.check_rdb_url(url)
    _probe_database(url, "the study storage")


def check_tracking(uri: str) -> None:
    """The MLflow tracking store at ``uri`` answers: a short /health probe for servers."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        check_tracking_server(uri)
    elif scheme and scheme.startswith(("postgresql", "mysql", "mssql")):
        _probe_database(uri, "the MLflow tracking database")


def preflight(storage_url: str, tracking_uri: str) -> None:
    """Both checks, tracking first (its failure is the slower one to notice otherwise)."""
    check_tracking(tracking_uri)
    check_storage(storage_url)


def _probe_database(url: str, what: str) -> None:
    import sqlalchemy

    connect_args = storage.pg_connect_args() if url.startswith("postgresql") else {}
    connect_args["connect_timeout"] = DB_PROBE_TIMEOUT if connect_args else None
    connect_args = {k: v for k, v in connect_args.items() if v is not None}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        raise UserError(f"cannot open {what} {mask_url(url)}: {storage.db_error_text(exc, url)}") from None
