"""The study journal's lock, broken only when the process that holds it is dead.

Optuna's :class:`~optuna.storages.journal.JournalFileSymlinkLock` is a
symlink ``journal.log.lock`` that a writer creates while it appends; a writer
that finds it unchanged for the grace period breaks it, whoever holds it. A
sweep stopped with Ctrl-Z while appending holds it for as long as it is
stopped: another sweep broke it, and the stopped one died on ``SIGCONT``
with "did not possess lock".

Here the symlink points at a small file named after the process holding the
lock (``journal.log.owner.<pid>.<start>.<host>``; ``<start>`` is the
process's start time, so a reused pid is not mistaken for the owner). A
writer that finds the lock taken:

- waits, however long, while the owner is a live process of this host
  (running or stopped), warning every minute with its pid;
- breaks it at once when the owner is a process of this host that is gone;
- breaks it after the grace period unchanged, as Optuna does, when the owner
  is on another host or unknown (a lock taken by Optuna itself).

The owner file exists, so Optuna's own lock (which ``stat``\\ s through the
symlink) keeps working beside this one.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

log = logging.getLogger(__name__)

OWNER_MARK = ".owner."
WARN_EVERY = 60.0  # seconds between two warnings about a lock held by a live process

_owned: dict[str, str] = {}  # journal path -> this process's owner file name (created once per process)


def _host() -> str:
    return socket.gethostname().replace("/", "_")


def start_ticks(pid: int) -> str:
    """The process's start time (clock ticks since boot, from ``/proc``), or "0" where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def owner_name(journal: str | Path, pid: int | None = None) -> str:
    """The name of the owner file of process ``pid`` (default: this one) for ``journal``."""
    pid = os.getpid() if pid is None else pid
    return f"{Path(journal).name}{OWNER_MARK}{pid}.{start_ticks(pid)}.{_host()}"


def owner_state(journal: str | Path, target: str) -> str:
    """``alive``, ``dead`` or ``unknown``: the process named by a lock's symlink ``target``."""
    prefix = Path(journal).name + OWNER_MARK
    name = Path(target).name
    if not name.startswith(prefix):
        return "unknown"  # Optuna's own lock (it points at the journal): no owner recorded
    try:
        pid_text, start, host = name[len(prefix) :].split(".", 2)
        pid = int(pid_text)
    except ValueError:
        return "unknown"
    if host != _host():
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:  # another user's live process
        pass
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return "dead"  # exited, not yet reaped
    except (OSError, IndexError):
        pass
    if start != "0" and start_ticks(pid) not in ("0", start):
        return "dead"  # the pid now names another process
    return "alive"


class OwnedJournalLock(JournalFileSymlinkLock):
    """Optuna's symlink lock, recording its owner and broken only when that owner is dead (module doc)."""

    def __init__(self, filepath: str, grace_period: int | None = 30) -> None:
        super().__init__(filepath, grace_period)
        self._folder = Path(filepath).parent

    def _owner_file(self) -> str:
        """This process's owner file, created on first use; dead processes' owner files are removed then."""
        key = f"{self._lock_target_file}:{os.getpid()}"
        if key not in _owned:
            _remove_dead_owner_files(self._lock_target_file)
            name = owner_name(self._lock_target_file)
            (self._folder / name).touch()
            _owned[key] = name
            atexit.register(_remove_quietly, self._folder / name)
        return _owned[key]

    def acquire(self) -> bool:
        target = self._owner_file()
        pause, warned = 0.001, time.monotonic()
        seen, since = None, time.monotonic()
        while True:
            try:
                os.symlink(target, self._lock_file)
                return True
            except FileExistsError:
                pass
            holder = _identity(self._lock_file)
            if holder is None:  # released meanwhile
                continue
            if holder != seen:  # the lock changed hands (a new symlink): its time starts again
                seen, since = holder, time.monotonic()
            state = owner_state(self._lock_target_file, holder[0])
            stale = state == "dead" or (
                state == "unknown" and self.grace_period is not None and time.monotonic() - since > self.grace_period
            )
            if stale and self._break(holder, state):
                pause = 0.001
                continue
            if time.monotonic() - warned > (WARN_EVERY if state == "alive" else 10.0):
                warned = time.monotonic()
                if state == "alive":
                    log.warning(
                        "the study journal's lock %s is held by process %s of this host, which is alive "
                        "(stopped with Ctrl-Z?): waiting; it is never broken while that process lives "
                        "(resume it with fg or kill -CONT, or end it)",
                        self._lock_file,
                        Path(holder[0]).name.split(OWNER_MARK, 1)[1].split(".", 1)[0],
                    )
                else:
                    log.warning(
                        "waiting for the study journal's lock %s (broken after %s s unchanged: its owner "
                        "cannot be checked from here)",
                        self._lock_file,
                        self.grace_period,
                    )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _break(self, holder: tuple[str, int, int], state: str) -> bool:
        """Remove the lock ``holder`` if it still stands; put it back if another took its place meanwhile."""
        aside = f"{self._lock_file}{uuid.uuid4().hex}.broken"
        try:
            os.rename(self._lock_file, aside)
        except OSError:
            return False
        if _identity(aside) != holder:  # taken by someone else between the look and the rename: give it back
            try:
                os.link(aside, self._lock_file, follow_symlinks=False)
            except OSError as exc:
                log.warning("could not restore the study journal's lock %s: %s", self._lock_file, exc)
            _remove_quietly(Path(aside))
            return False
        _remove_quietly(Path(aside))
        if state == "dead":
            _remove_quietly(self._folder / Path(holder[0]).name)
            log.warning("broke the study journal's lock %s: its owner %s is gone", self._lock_file, holder[0])
        else:
            log.warning(
                "broke the study journal's lock %s: unchanged for %s s, and its owner %s cannot be checked from here",
                self._lock_file,
                self.grace_period,
                holder[0],
            )
        return True


def _identity(link: str) -> tuple[str, int, int] | None:
    """(target, inode, creation time) of a lock symlink: a new lock is a new symlink, even by the same owner
    (a rename keeps all three)."""
    try:
        target = os.readlink(link)
        st = os.lstat(link)
    except OSError:
        return None
    return target, st.st_ino, st.st_mtime_ns


def _remove_dead_owner_files(journal: str) -> None:
    folder, prefix = Path(journal).parent, Path(journal).name + OWNER_MARK
    try:
        names = [p.name for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        if owner_state(journal, name) == "dead":
            _remove_quietly(folder / name)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
