"""A study journal file whose last line was torn, found and repaired before it is appended to.

Optuna's journal is one JSON operation per line. A writer killed in the
middle of a write, or a full disk, leaves a last line without its newline.
Optuna's reader skips such a tail, but the next append lands right after it,
gluing two operations into one invalid line in the middle of the file: from
then on every reader fails (``Expecting ':' delimiter``). So, when a sweep
opens the journal, a torn tail is cut off under Optuna's own journal lock
and kept in a backup file beside the journal, with a warning naming both. A
journal already corrupt inside (written by an older version) is refused with
a message naming the file, the line and the fix.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.journal_lock import OwnedJournalLock

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


def torn_tail(path: str | Path) -> int | None:
    """The offset where a torn last line starts (the intact prefix's length), or None if the tail is whole."""
    size = os.path.getsize(path)
    if size == 0:
        return None
    with open(path, "rb") as f:
        chunk = _CHUNK
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read(size - start)
            body = data[:-1] if data.endswith(b"\n") else data
            cut = body.rfind(b"\n")
            if cut >= 0 or start == 0:
                break
            chunk *= 4
    last = data[cut + 1 :]
    if last.endswith(b"\n"):
        try:
            json.loads(last)
            return None
        except ValueError:
            pass
    return start + cut + 1


#: how every line of an Optuna journal starts (``JournalStorage`` writes ``{"op_code": ..., "worker_id": ...}``)
_OPERATION_START = b'{"op_code":'


def refuse_what_is_not_a_journal(path: str | Path) -> None:
    """A ``sweep.storage`` path that exists must be an Optuna journal; anything else is refused, untouched.

    A directory, a device (``/dev/null``) or a file whose first line is not a
    journal operation (a ``results.json``, ``/etc/passwd``) would otherwise be
    repaired as a torn journal, truncated or appended to. An empty file is a
    journal with no operation yet; one that starts with zeros is a journal
    lost in a crash, refused as damaged by :func:`check_journal`.
    """
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise UserError(
            f"sweep.storage={str(path)!r} is a directory, not a study journal; give a file path "
            f"(e.g. {path / 'journal.log'}), sqlite:///PATH or postgresql+psycopg://..."
        )
    if not path.is_file():
        raise UserError(
            f"sweep.storage={str(path)!r} is a device or special file, not a study journal; give the "
            "path of a journal file (a new one is created), sqlite:///PATH or postgresql+psycopg://..."
        )
    try:
        with open(path, "rb") as f:
            head = f.read(_CHUNK)
    except OSError as exc:
        raise UserError(f"cannot read the study journal {path}: {exc.strerror}") from None
    if not head or head[:1] == b"\0":  # zeros: a journal lost in a crash, refused as damaged by check_journal
        return
    first, newline, _ = head.partition(b"\n")
    if newline:
        try:
            operation = json.loads(first)
        except ValueError:
            operation = None
        if isinstance(operation, dict) and "op_code" in operation:
            return
    elif head.startswith(_OPERATION_START):  # the first write of a journal, cut short
        return
    raise UserError(
        f"sweep.storage={str(path)!r} is not an Optuna study journal (its first line is not a "
        "journal operation), so it is left as it is; point sweep.storage at a new file or at a "
        "study's journal"
    )


def check_journal(path: str | Path, repair: bool = True, lock_grace: int = 30) -> Path | None:
    """Cut a torn last line off the journal at ``path`` into a backup file; returns the backup's path.

    With ``repair=False`` (read-only callers) a torn tail is only reported:
    Optuna's reader skips it. ``lock_grace``: seconds after which the journal's
    lock, left by a writer killed while holding it, is broken.
    """
    path = Path(path)
    if not path.is_file():
        return None
    offset = torn_tail(path)
    if offset is None:
        return None
    _refuse_a_tail_that_is_not_json(path, offset)
    if not repair:
        log.warning(
            "study journal %s ends in a torn line (a write cut short); it is ignored here, and the next "
            "numpynet-sweep moves it to a backup file beside the journal",
            path,
        )
        return None
    lock = OwnedJournalLock(str(path), lock_grace)  # the lock Optuna's own writers hold while appending
    lock.acquire()
    try:
        offset = torn_tail(path)  # again, under the lock: a live writer may have completed its line
        if offset is None:
            return None
        size = path.stat().st_size
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.torn-{stamp}-{os.getpid()}")
        with open(path, "rb") as src:
            src.seek(offset)
            torn = src.read(size - offset)
        with open(backup, "wb") as out:
            out.write(torn)
            out.flush()
            os.fsync(out.fileno())
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    log.warning(
        "study journal %s ended in a torn line (%d bytes of a write cut short): moved them to %s and "
        "kept the %d intact bytes before them",
        path,
        len(torn),
        backup,
        offset,
    )
    return backup


def _refuse_a_tail_that_is_not_json(path: Path, offset: int) -> None:
    """A write cut short leaves the start of one JSON operation; zeros (a file lost in a crash) or other
    bytes are damage to be looked at, not cut off: the study would silently start over."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(64)
    if head.lstrip(b" \t")[:1] == b"{" and b"\0" not in head:
        return
    what = "NUL bytes" if b"\0" in head else f"bytes that do not start a JSON operation ({head[:16]!r})"
    where = f"after its {offset} intact bytes" if offset else "from its first byte"
    raise UserError(
        f"the study journal {path} holds {what} {where}: not a write cut short, so it is left as it is; "
        f"restore it from a backup, or set it aside to start the study afresh: mv {path} {path}.damaged"
    )


def corrupt_journal_error(path: str | Path, exc: BaseException) -> UserError:
    """A one-line error naming the journal, its first invalid line and how to keep the intact part."""
    path = Path(path)
    bad, total = None, 0
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                total = number
                if bad is None:
                    try:
                        json.loads(line)
                    except ValueError:
                        bad = number
    except OSError:
        pass
    if bad is None:
        return UserError(f"cannot read the study journal {path}: {exc}")
    keep = bad - 1
    return UserError(
        f"the study journal {path} is corrupt at line {bad} of {total} (a torn write that was later appended to: "
        f"{exc}); keep its {keep} intact lines and set the rest aside, then run again: "
        f"head -n {keep} {path} > {path}.fixed && mv {path} {path}.corrupt && mv {path}.fixed {path}"
    )
