"""Issue 10, records of runs: a failed run is reproducible, the numeric environment is recorded,
registered models stay with their study, and store faults are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers.commands import run_command

DIVERGING = [
    "data=breast_cancer",
    "optimizer=gd",
    "optimizer.learning_rate=100",
    "train.epoch=50",
    "network.hidden=[8]",
    "tracking.log_model=false",
    "tracking.log_plots=false",
    "tracking.experiment=records",
]


def _only_run(client: MlflowClient, experiment: str = "records"):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return runs


# ----------------------------------------------------------------- item 13
@pytest.mark.slow
def test_a_diverged_run_has_its_config_and_reproduces(mlflow_store: str, tmp_path: Path) -> None:
    train = run_command("numpynet-train", DIVERGING, tmp_path)
    assert train.returncode == 1 and "diverged" in train.stderr, train.stderr
    client = MlflowClient(tracking_uri=mlflow_store)
    (source,) = _only_run(client)
    assert source.info.status == "FAILED"
    assert "config.yaml" in {a.path for a in client.list_artifacts(source.info.run_id)}

    again = run_command("numpynet-reproduce", [source.info.run_id], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("identical:") and "the reproduction diverged too" in again.stdout
    assert "Traceback" not in again.stderr


# ----------------------------------------------------------------- item 12
SWEEP_FAST = [
    "train.epoch=6",
    "train.decay_interval=2",
    "network.hidden=[8]",
    "tracking.log_plots=false",
    "tracking.experiment=records",
]


def _sweep(study_name: str):
    from numpynet.sweeps.search.invocation import run_sweep

    return run_sweep("default", ["n_trials=1", f"study_name={study_name}", "pruner.name=none"], SWEEP_FAST)


@pytest.mark.slow
def test_studies_whose_names_sanitize_alike_register_separate_models(mlflow_store: str) -> None:
    from numpynet.sweeps.recording.names import STUDY as TAG_REGISTERED_STUDY
    from numpynet.sweeps.search.best_model import registered_model_name

    names = {registered_model_name(s) for s in ("x y", "x-y", "x_y", "x/y", "x  y")}
    assert len(names) == 5
    assert registered_model_name("digits-default") == "numpynet-digits-default"  # unchanged when nothing to fix

    first, second = _sweep("x y"), _sweep("x-y")
    assert first.registered_version and second.registered_version
    client = MlflowClient(tracking_uri=mlflow_store)
    for study, summary in (("x y", first), ("x-y", second)):
        (version,) = client.search_model_versions(f"name='{registered_model_name(study)}'")
        assert version.tags[TAG_REGISTERED_STUDY] == study
        assert version.tags["numpynet.trial_run_id"] == summary.best_run_id
        assert client.get_run(summary.best_run_id).data.tags["numpynet.study"] == study


@pytest.mark.slow
def test_a_registered_model_of_another_study_is_left_alone(mlflow_store: str, caplog) -> None:
    from numpynet.sweeps.recording.names import STUDY as TAG_REGISTERED_STUDY
    from numpynet.sweeps.search.best_model import registered_model_name

    client = MlflowClient(tracking_uri=mlflow_store)
    name = registered_model_name("mine")
    client.create_registered_model(name, tags={TAG_REGISTERED_STUDY: "someone else's"})
    summary = _sweep("mine")
    assert summary.best_run_id is not None and summary.registered_version is None
    assert client.search_model_versions(f"name='{name}'") == []
    assert 'belongs to study "someone else\'s"' in caplog.text


# ----------------------------------------------------------------- item 15
@pytest.mark.slow
def test_runs_record_the_numeric_environment_and_reproduce_warns_when_it_differs(
    mlflow_store: str, tmp_path: Path
) -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.training import numeric_env
    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.trainer import train
    from tests.helpers.commands import TINY

    with threadpool_limits(limits=1, user_api="blas"):
        run_id = train(compose_config(TINY))["run_id"]
    client = MlflowClient(tracking_uri=mlflow_store)
    tags = client.get_run(run_id).data.tags
    assert tags[numeric_env.NUMPY_VERSION] == np.__version__
    assert tags[numeric_env.BLAS_VENDOR] in ("openblas", "mkl", "blis", "flexiblas")
    assert tags[numeric_env.BLAS_KERNEL] and tags[numeric_env.BLAS_VERSION]
    assert tags[numeric_env.BLAS_THREADS] == "1"

    # the same machine: no warning, and the recorded thread count is used again
    same = run_command("numpynet-reproduce", [run_id], tmp_path)
    assert same.returncode == 0 and same.stdout.startswith("identical:"), same.stderr
    assert "numeric environment" not in same.stdout + same.stderr
    repro = client.search_runs(
        [client.get_run(run_id).info.experiment_id], f"tags.`numpynet.reproduced_from` = '{run_id}'"
    )[0]
    assert repro.data.tags[numeric_env.BLAS_THREADS] == "1"

    # a run made elsewhere: warned before training and said in the verdict
    client.set_tag(run_id, numeric_env.NUMPY_VERSION, "1.0.0")
    client.set_tag(run_id, numeric_env.BLAS_KERNEL, "Prescott")
    other = run_command("numpynet-reproduce", [run_id], tmp_path, env={"OPENBLAS_CORETYPE": ""})
    assert other.returncode == 0, other.stderr
    warning = [line for line in other.stderr.splitlines() if "numeric environment differs" in line]
    assert len(warning) == 1 and "[WARNING]" in warning[0]
    assert f"numpy version 1.0.0 -> {np.__version__}" in warning[0] and "blas kernel Prescott -> " in warning[0]
    assert (
        f"the numeric environment differs from run {run_id}'s (numpy version 1.0.0 -> {np.__version__}" in other.stdout
    )
    assert "Traceback" not in other.stderr


# ----------------------------------------------------------------- item 16
@pytest.fixture
def read_only_store(tmp_path: Path, _template_store: Path):
    """A migrated SQLite store that cannot be written (immutable: chmod does not stop root)."""
    import shutil
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "mlflow.db"
    shutil.copy(_template_store, db)
    MlflowClient(tracking_uri=f"sqlite:///{db}").create_experiment(  # readable content
        "records", artifact_location=(folder / "artifacts").as_uri()
    )
    made = subprocess.run(["chattr", "+i", str(db)], capture_output=True)
    if made.returncode != 0:
        pytest.fail(f"chattr +i is needed for this test: {made.stderr!r}")
    try:
        yield f"sqlite:///{db}"
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)


def _one_line(proc, fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "SQL:" not in proc.stderr, proc.stderr
    assert fragment in lines[-1], proc.stderr
    assert [ln for ln in lines if not ln.startswith("[INFO]")] == [lines[-1]], proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, args",
    [
        ("numpynet-train", ["train.epoch=3", "network.hidden=[8]", "tracking.experiment=records"]),
        ("numpynet-sweep", ["sweep.n_trials=1", "network.hidden=[8]", "tracking.experiment=records"]),
    ],
)
def test_an_unwritable_store_is_one_line_and_exit_1(
    command: str, args: list[str], tmp_path: Path, read_only_store: str
) -> None:
    for uri, said in (
        (read_only_store, "attempt to write a readonly database"),
        ("sqlite:////dev/null/store/mlflow.db", "Not a directory: /dev/null/store"),
    ):
        proc = run_command(command, [*args, f"tracking.uri={uri}"], tmp_path, tracking_uri=None)
        assert proc.returncode == 1, proc.stderr
        _one_line(proc, f"MLflow store {uri}: {said}")


@pytest.mark.slow
def test_reproduce_against_a_server_that_cannot_store_files_fails_fast_in_one_line(
    tmp_path: Path, mlflow_server
) -> None:
    """(b): the artifact store behind the server is unwritable; reads still work.

    The session's server: only this test's experiment folder is frozen, and only while it runs."""
    import subprocess

    from numpynet.sweeps.recording.store import PROBE_RETRIES
    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.trainer import train
    from tests.helpers.commands import TINY

    server = mlflow_server
    tiny = [o for o in TINY if not o.startswith("tracking.experiment=")]  # its own experiment on the server
    source = train(
        compose_config(
            [*tiny, f"tracking.uri={server.url}", "tracking.experiment=unwritable", "tracking.log_plots=false"]
        )
    )
    frozen = server.artifacts_dir / source["experiment_id"]
    subprocess.run(["chattr", "+i", str(frozen)], check=True)  # root ignores chmod; not this
    try:
        proc = run_command("numpynet-reproduce", [source["run_id"], "--tracking-uri", server.url], tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("[INFO]")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"numpynet-reproduce: cannot store files in the MLflow store {server.url}")
    assert "ended FAILED" in lines[0]
    client = MlflowClient(tracking_uri=server.url)
    (new,) = client.search_runs([source["experiment_id"]], f"tags.`numpynet.reproduced_from` = '{source['run_id']}'")
    assert new.info.status == "FAILED"  # nothing left RUNNING
    # fast, counted rather than timed: the server's access log shows the few tries of the probing
    # write, not MLflow's default of 1 + 7 with doubling waits (minutes)
    upload = (
        f'"PUT /api/2.0/mlflow-artifacts/artifacts/{source["experiment_id"]}/{new.info.run_id}/artifacts/config.yaml '
    )
    tries = server.log_path.read_text(errors="replace").count(upload)
    assert 1 <= tries <= 1 + int(PROBE_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]), tries


@pytest.mark.slow
def test_reproducing_a_sweep_parent_names_its_best_trial_run(mlflow_store: str, tmp_path: Path) -> None:
    """(c)"""
    summary = _sweep("parent")
    proc = run_command("numpynet-reproduce", [summary.parent_run_id], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("[INFO]")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"run {summary.parent_run_id} is the parent run of sweep 'parent'" in lines[0]
    assert f"numpynet-reproduce {summary.best_run_id}" in lines[0]
