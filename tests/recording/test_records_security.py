"""Issue 10, security items: no credential in any record or output, records are data, no git lock.

Each test runs the real command or function and then looks at everything it
wrote: params, tags, Optuna attributes, artifact files, stdout, stderr.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from numpynet.sweeps.recording import store as tracking


# ------------------------------------------------------------------ item 4
def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True, capture_output=True
    )


def _committed_repo(tmp_path: Path) -> Path:
    """A git repository with one commit of ``f.txt``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("a\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-qm", "first")
    return repo


def test_git_commit_takes_no_index_lock_and_does_not_rewrite_the_index(tmp_path: Path) -> None:
    repo = _committed_repo(tmp_path)
    index = repo / ".git" / "index"
    stat = (repo / "f.txt").stat()
    # stale stat info, set rather than waited for: the file's mtime is no longer the one the index
    # holds, so a locking `git status` refreshes the entry and rewrites the index
    os.utime(repo / "f.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns - 10_000_000_000))
    before = index.stat()
    commit, dirty = tracking.git_commit(repo)
    after = index.stat()
    assert len(commit) == 40 and dirty is False
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), (
        "git status took .git/index.lock and rewrote the index"
    )
    _git(repo, "status", "--porcelain")  # the control: a plain `git status` does rewrite it here
    rewritten = index.stat()
    assert (rewritten.st_ino, rewritten.st_mtime_ns) != (before.st_ino, before.st_mtime_ns), (
        "the index needed no refresh: this test would pass whatever git_commit does"
    )


def test_git_commit_works_while_the_user_holds_the_index_lock(tmp_path: Path) -> None:
    repo = _committed_repo(tmp_path)
    (repo / "f.txt").write_text("b\n")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # a user's `git add` in progress
    commit, dirty = tracking.git_commit(repo)
    assert len(commit) == 40 and dirty is True
    assert lock.exists() and lock.read_text() == ""


# ------------------------------------------------------------------ item 2
@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "postgresql+psycopg://postgres:ab/SECRET@127.0.0.1:5432/db",
            "postgresql+psycopg://postgres:***@127.0.0.1:5432/db",
        ),
        ("postgresql+psycopg://postgres:ab?SECRET@db-host/optuna", "postgresql+psycopg://postgres:***@db-host/optuna"),
        ("postgresql://u:p@SECRET@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p%2FSECRET@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=SECRET", "postgresql://u@h/db?sslmode=require&password=***"),
        ("postgresql://u:SECRET@h/db?PassWord=SECRET", "postgresql://u:***@h/db?PassWord=***"),
        ("https://alice:SECRET@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("postgresql+psycopg://postgres@127.0.0.1/db", "postgresql+psycopg://postgres@127.0.0.1/db"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
        ("/home/me/mlruns/optuna/journal.log", "/home/me/mlruns/optuna/journal.log"),
    ],
)
def test_mask_url_hides_every_password(url: str, shown: str) -> None:
    from numpynet.sweeps.recording.redact import mask_url
    from numpynet.sweeps.recording.redact import mask_url as study_mask_url

    assert mask_url(url) == shown
    assert study_mask_url(url) == shown
    assert "SECRET" not in mask_url(url)


def test_mask_urls_in_text_and_overrides() -> None:
    from numpynet.sweeps.recording.redact import mask_urls_in, recordable_overrides

    text = "cannot open 'postgresql://u:ab/SECRET@h/db': refused; tracking.uri=http://a:SECRET@h:1/x"
    assert "SECRET" not in mask_urls_in(text)
    assert recordable_overrides(["train.epoch=3", "tracking.uri=postgresql://u:SECRET@h/db"]) == [
        "train.epoch=3",
        "tracking.uri=postgresql://u:***@h/db",
    ]
    # the sentence's own punctuation is not part of the URL (``db:`` stays ``db:``, not ``db%3A``)
    assert (
        mask_urls_in("cannot open the study storage postgresql+psycopg://u:SECRET@h:1/db: refused")
        == "cannot open the study storage postgresql+psycopg://u:***@h:1/db: refused"
    )
    assert mask_urls_in("stores (sqlite:///a.db, http://u:SECRET@h/x).") == "stores (sqlite:///a.db, http://u:***@h/x)."


@pytest.mark.slow
def test_cannot_open_storage_error_hides_a_password_with_a_slash(tmp_path: Path) -> None:
    from tests.helpers.commands import run_command

    url = "postgresql+psycopg://postgres:ab/SECRET@127.0.0.1:1/nodb"  # nothing listens on port 1
    proc = run_command(
        "numpynet-sweep",
        [f"sweep.storage={url}", "sweep.n_trials=1"],
        tmp_path,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot open" in proc.stderr and "postgres:***@127.0.0.1:1" in proc.stderr
    assert "SECRET" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ item 3
def _replace_logged_config(client, run_id: str, tmp_path: Path, edit) -> None:
    local = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl")))
    text = edit(local.read_text())
    upload = tmp_path / "up" / "config.yaml"
    upload.parent.mkdir()
    upload.write_text(text)
    client.log_artifact(run_id, str(upload))  # the local artifact store replaces the file


@pytest.mark.slow
def test_reproduce_refuses_an_interpolation_in_a_logged_config(
    mlflow_store: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from numpynet.sweeps.cli.reproduce import main
    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.trainer import train
    from tests.helpers.commands import TINY

    monkeypatch.setenv("SOME_SECRET", "TOPSECRETvalue")
    run_id = train(compose_config(TINY))["run_id"]
    client = MlflowClient(tracking_uri=mlflow_store)
    _replace_logged_config(
        client,
        run_id,
        tmp_path,
        lambda text: text.replace("initialization: he", "initialization: ${oc.env:SOME_SECRET}"),
    )
    experiment = client.get_run(run_id).info.experiment_id

    assert main([run_id]) == 2
    err = capsys.readouterr().err
    assert "network.initialization" in err and "interpolation" in err
    assert "TOPSECRETvalue" not in err and len(err.strip().splitlines()) == 1
    assert len(client.search_runs([experiment])) == 1  # nothing trained, nothing recorded
    for run in client.search_runs([experiment]):
        assert "TOPSECRETvalue" not in str(run.data.params) + str(run.data.tags)

    # the user may replace the offending value from the command line
    assert main([run_id, "network.initialization=he"]) == 0
    assert "identical" in capsys.readouterr().out


PG_WITH_PASSWORD = "postgresql+psycopg://postgres:S3cretPw@127.0.0.1:5432/nowhere"


@pytest.mark.parametrize(
    "command, args",
    [
        ("numpynet-train", [f'tracking.uri="{PG_WITH_PASSWORD}"', "--cfg", "job"]),
        ("numpynet-train", [f'tracking.uri="{PG_WITH_PASSWORD}"', "--cfg", "all"]),
        ("numpynet-train", [f'tracking.uri="{PG_WITH_PASSWORD}"', "--help"]),
        ("numpynet-sweep", [f'sweep.storage="{PG_WITH_PASSWORD}"', "--cfg", "job"]),
        ("numpynet-sweep", [f'sweep.storage="{PG_WITH_PASSWORD}"', "--cfg", "all"]),
        ("numpynet-sweep", [f'tracking.uri="{PG_WITH_PASSWORD}"', "--cfg", "job", "--package", "tracking"]),
        ("numpynet-sweep", [f'sweep.storage="{PG_WITH_PASSWORD}"', "--help"]),
    ],
)
def test_printing_the_config_masks_a_password(command: str, args: list[str], capsys) -> None:
    """--cfg and --help print the composed config, URLs included: masked, like every other output."""
    from numpynet.sweeps.cli.sweep import sweep_main
    from numpynet.sweeps.cli.train import train_main

    if command == "numpynet-train":
        assert train_main(args) == 0
    else:
        assert sweep_main(args) in (0, None)
    out = capsys.readouterr().out
    assert "S3cretPw" not in out
    if "--help" not in args:
        assert "postgresql+psycopg://postgres:***@127.0.0.1:5432/nowhere" in out


# ------------------------------------------------- issue 23, item 5: secrets through best_config.yaml
def _best_config(folder: Path, run_name: str) -> Path:
    """A sweep's ``best_config.yaml`` as search/end_of_sweep.py writes it, from a trial's logged config whose
    ``tracking.run_name`` was replaced by ``run_name`` (the record is data: anything may be planted)."""
    from numpynet.sweeps.search.end_of_sweep import BEST_CONFIG_HEADER, as_training_config
    from numpynet.sweeps.training.config import compose_config, to_yaml
    from tests.helpers.commands import TINY

    logged = to_yaml(compose_config([*TINY, "data.val_fraction=0.2"])).replace(
        "run_name: null", f"run_name: {run_name}"
    )
    assert run_name in logged
    path = folder / "best_config.yaml"
    path.write_text(BEST_CONFIG_HEADER + as_training_config(logged))
    return path


def _everything_recorded(store_uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(store_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    texts = []
    for run in runs:
        texts += [run.info.run_name, str(run.data.params), str(run.data.tags)]
        texts.append(Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text())
    return "\n".join(texts)


@pytest.mark.slow
def test_best_config_retrains_as_docs_say_without_resolving_a_planted_interpolation(tmp_path: Path) -> None:
    from tests.helpers.commands import run_command

    _best_config(tmp_path, "leak-${oc.env:SOME_SECRET}")
    proc = run_command(
        "numpynet-train",
        ["--config-dir", str(tmp_path), "--config-name", "best_config"],
        tmp_path,
        tracking_uri=None,
        env={"SOME_SECRET": "TOPSECRETvalue"},
    )
    assert proc.returncode == 0, proc.stderr
    recorded = _everything_recorded(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert "leak-${oc.env:SOME_SECRET}" in recorded  # kept as text
    assert "TOPSECRETvalue" not in recorded + proc.stdout + proc.stderr


@pytest.mark.slow
def test_numpynet_train_refuses_an_interpolation_read_from_a_config_file(tmp_path: Path) -> None:
    """A downloaded ``best_config.yaml`` edited to hold ``${oc.env:...}``: one line, nothing created."""
    from tests.helpers.commands import run_command

    path = _best_config(tmp_path, "placeholder")
    path.write_text(path.read_text().replace("run_name: placeholder", "run_name: leak-${oc.env:SOME_SECRET}"))
    proc = run_command(
        "numpynet-train",
        ["--config-dir", str(tmp_path), "--config-name", "best_config"],
        tmp_path,
        tracking_uri=None,
        env={"SOME_SECRET": "TOPSECRETvalue"},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "numpynet-train: tracking.run_name='leak-${oc.env:SOME_SECRET}' is an interpolation read "
        "from a config file; numpynet-train resolves no ${...} from a file (it could copy this "
        "machine's environment or files into the run's record): write the value out, or give it "
        "on the command line as tracking.run_name=...\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_config.yaml"]  # no store, no run
    # the user's own interpolation on the command line is theirs to resolve
    proc = run_command(
        "numpynet-train",
        ["--config-dir", str(tmp_path), "--config-name", "best_config", "tracking.run_name=seed-${train.seed}"],
        tmp_path,
        tracking_uri=None,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(seed-0)" in proc.stderr
