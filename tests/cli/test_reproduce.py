"""Reproducing a logged run: bit-identical histories across processes, and honest verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from numpynet.sweeps.cli.reproduce import Reproduction, compare_runs, reproduce
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording.names import REPRODUCED_FROM, REPRODUCTION
from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.training.trainer import train
from tests.helpers.commands import TINY, run_command


class Stop(Exception):
    pass


def _history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.slow
def test_reproduce_in_a_separate_process_is_bit_identical(mlflow_store: str, tmp_path: Path) -> None:
    # dropout, L2 and decay exercise every source of randomness and every schedule path
    source = train(
        compose_config(
            [
                *TINY,
                "train.epoch=5",
                "train.regularization=l2+dropout",
                "train.keep_prob=0.8",
                "train.lambd=0.1",
                "train.decay=continuous",
                "train.decay_rate=0.1",
                "train.seed=3",
            ]
        )
    )["run_id"]
    proc = run_command("numpynet-reproduce", [source], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("identical: run ") and "over 5 epochs, weights identical" in proc.stdout

    client = MlflowClient(mlflow_store)
    (new,) = [
        r
        for r in client.search_runs([client.get_run(source).info.experiment_id])
        if r.data.tags.get(REPRODUCED_FROM) == source
    ]
    assert new.info.status == "FINISHED" and new.data.tags[REPRODUCTION] == "identical"
    for key in ("train_cost", "val_cost", "learning_rate"):
        assert _history(client, new.info.run_id, key) == _history(client, source, key)
    assert new.data.tags["numpynet.weights_sha256"] == client.get_run(source).data.tags["numpynet.weights_sha256"]


@pytest.mark.slow
def test_a_different_config_is_reported_with_the_first_differing_epoch(mlflow_store: str) -> None:
    a = train(compose_config([*TINY, "train.seed=1"]))["run_id"]
    b = train(compose_config([*TINY, "train.seed=2"]))["run_id"]
    verdict = compare_runs(MlflowClient(mlflow_store), a, b)
    assert not verdict.identical
    metric, epoch, _, _ = verdict.first_difference
    assert (metric, epoch) == ("train_cost", 0)
    assert verdict.describe().startswith("DIFFERENT: train_cost of run")
    assert verdict.same_data


@pytest.mark.slow
def test_overrides_apply_and_a_length_change_exits_1(mlflow_store: str, capsys) -> None:
    from numpynet.sweeps.cli.reproduce import reproduce_main

    source = train(compose_config(TINY))["run_id"]
    assert reproduce_main([source, "train.epoch=4"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("DIFFERENT: run ") and "logged 4 epochs of train_cost, run " in out and "logged 3" in out


@pytest.mark.slow
def test_changed_data_is_named_in_the_verdict(mlflow_store: str) -> None:
    source = train(compose_config(TINY))["run_id"]
    verdict = reproduce(source, overrides=["data.seed=5"])
    assert not verdict.identical and not verdict.same_data
    assert "the data hash differs" in verdict.describe()


@pytest.mark.slow
def test_a_stopped_run_is_compared_over_its_epochs(mlflow_store: str) -> None:
    def stop(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(compose_config([*TINY, "train.epoch=6"]), on_epoch=stop, stop_exceptions=(Stop,))
    client = MlflowClient(mlflow_store)
    (source,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    verdict = reproduce(source.info.run_id)
    assert verdict.identical and verdict.epochs == 2 and verdict.same_weights is None
    assert "was stopped early; its 2 epochs were compared" in verdict.describe()


def test_unknown_run_and_run_without_config(mlflow_store: str, capsys) -> None:
    from numpynet.sweeps.cli.reproduce import reproduce_main

    assert reproduce_main(["0123456789abcdef"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numpynet-reproduce: no run '0123456789abcdef'") and err.count("\n") == 1

    client = MlflowClient(mlflow_store)
    foreign = client.create_run(client.create_experiment("other")).info.run_id
    with pytest.raises(UserError, match=f"run {foreign} has no config.yaml artifact"):
        Reproduction(foreign)


@pytest.mark.parametrize("given", [False, True])
def test_a_store_that_does_not_exist_is_named_and_not_created(tmp_path: Path, monkeypatch, capsys, given) -> None:
    """Run from another folder, the default store is not there: say how to find the run, create nothing."""
    from numpynet.sweeps.cli.reproduce import reproduce_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["0123456789abcdef", *(["--tracking-uri", f"sqlite:///{tmp_path / 'else' / 'mlflow.db'}"] if given else [])]
    assert reproduce_main(args) == 2
    err = capsys.readouterr().err
    missing = tmp_path / "else" / "mlflow.db" if given else tmp_path / "mlruns" / "mlflow.db"
    assert err.startswith(f"numpynet-reproduce: no tracking store at {missing} ") and err.count("\n") == 1
    assert "--tracking-uri sqlite:////path/to/mlruns/mlflow.db" in err
    assert list(tmp_path.iterdir()) == []  # no empty store left behind


@pytest.mark.slow
def test_reproduction_lands_in_the_source_experiment_and_store(mlflow_store: str) -> None:
    source = train(compose_config([*TINY, "tracking.experiment=elsewhere"]))["run_id"]
    reproduction = Reproduction(source, tracking_uri=mlflow_store)
    assert reproduction.cfg.tracking.experiment == "elsewhere"
    assert reproduction.cfg.tracking.uri == mlflow_store
    verdict = reproduction.run()
    client = MlflowClient(mlflow_store)
    assert client.get_run(verdict.new_run_id).info.experiment_id == client.get_run(source).info.experiment_id


def _run_with_config(client: MlflowClient, tmp_path: Path, content: bytes) -> str:
    run_id = client.create_run(client.create_experiment("garbled")).info.run_id
    upload = tmp_path / "upload" / "config.yaml"
    upload.parent.mkdir(exist_ok=True)
    upload.write_bytes(content)
    client.log_artifact(run_id, str(upload))
    return run_id


@pytest.mark.parametrize(
    "content,reason",
    [
        (
            b"train: {epoch: [",
            "is not valid YAML (line 1, column 17: expected the node content, but found '<stream end>')",
        ),
        (b"train:\n  epoch: 3\n  epoch: 4\n", "is not valid YAML (line 3, column 3: found duplicate key epoch)"),
        (b"train: \xff\xfe\n", "is not valid YAML (not UTF-8 text: byte 7)"),
        (b"- train\n- network\n", "is not a mapping of config keys (it holds a list)"),
        (b"just some words\n", "is not a mapping of config keys (it holds a str)"),
        (b"", "is not a mapping of config keys (it holds nothing)"),
        (b"~: x\n", "is not a valid config (Incompatible key type 'NoneType')"),
    ],
)
def test_a_garbled_or_non_mapping_logged_config_is_one_line_naming_the_run(
    mlflow_store: str, tmp_path: Path, capsys, content: bytes, reason: str
) -> None:
    from numpynet.sweeps.cli.reproduce import reproduce_main

    run_id = _run_with_config(MlflowClient(mlflow_store), tmp_path, content)
    assert reproduce_main([run_id]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"numpynet-reproduce: run {run_id}'s config.yaml artifact {reason}; "
        "it cannot be reproduced from this artifact\n"
    )
    assert "numpynet-reproduce-" not in err and "Traceback" not in err
