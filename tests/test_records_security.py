"""Issue 10, security items: no credential in any record or output, records are data, no git lock.

Each test runs the real command or function and then looks at everything it
wrote: params, tags, Optuna attributes, artifact files, stdout, stderr.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from sweeps import tracking


# ------------------------------------------------------------------ item 4
def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def test_git_commit_takes_no_index_lock_and_does_not_rewrite_the_index(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("a\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-qm", "first")
    index = repo / ".git" / "index"
    time.sleep(1.1)
    os.utime(repo / "f.txt")  # stale stat info: a locking `git status` refreshes and rewrites the index
    before = index.stat()
    commit, dirty = tracking.git_commit(repo)
    after = index.stat()
    assert len(commit) == 40 and dirty is False
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), \
        "git status took .git/index.lock and rewrote the index"


def test_git_commit_works_while_the_user_holds_the_index_lock(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("a\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-qm", "first")
    (repo / "f.txt").write_text("b\n")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # a user's `git add` in progress
    commit, dirty = tracking.git_commit(repo)
    assert len(commit) == 40 and dirty is True
    assert lock.exists() and lock.read_text() == ""
