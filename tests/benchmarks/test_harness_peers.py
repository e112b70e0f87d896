"""The harness section's peers (the loops a user would write) and its step timers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from benchmarks import harness_steps, peer_loops
from benchmarks.harness_overhead import Size, study_body

TINY = ["network.hidden=[16]", "train.epoch=2"]


def _body(n_trials: int) -> dict:
    body = study_body(Size("default", "digits", "default", n_trials, 2), "peer-test")
    body["overrides"] = [*body["overrides"], *TINY]
    return body


def test_the_peers_suggest_what_the_sweeps_space_samples_under_the_same_seeded_sampler():
    """Same seed, same values told: the peers' suggestions are the harness's samples, conditions included."""
    import optuna

    from numpynet.sweeps.search.space import SearchSpace
    from numpynet.sweeps.training.config import CONF_DIR, compose_config

    body = _body(12)
    space = SearchSpace.from_config(body["space"], compose_config(body["overrides"]), CONF_DIR)
    sampler = {k: v for k, v in body["sampler"].items() if k != "name"}
    ours = optuna.create_study(sampler=optuna.samplers.TPESampler(**sampler), direction="maximize")
    theirs = optuna.create_study(sampler=optuna.samplers.TPESampler(**sampler), direction="maximize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for i in range(12):  # past the 10 random start-up trials, into TPE proper
        a, b = ours.ask(), theirs.ask()
        params = peer_loops.suggest(a, body["space"])
        assert params == space.sample(b) == a.params
        value = (i * 7919) % 13 / 13  # any values, told alike
        ours.tell(a, value)
        theirs.tell(b, value)
    conditional = [t.params for t in ours.trials if "train.decay_rate" in t.params]
    assert conditional and all(p["train.decay"] in ("continuous", "discrete") for p in conditional)
    assert any(t.params["train.decay"] is None and "train.decay_rate" not in t.params for t in ours.trials)


@pytest.mark.slow  # MLflow runs in a SQLite store: a second or more
@pytest.mark.parametrize("per_epoch", [False, True], ids=["careful", "tutorial"])
def test_a_peer_loop_records_one_nested_run_per_trial_with_its_curves(
    tmp_path: Path, _template_store: Path, monkeypatch: pytest.MonkeyPatch, per_epoch: bool
):
    import mlflow
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    shutil.copy(_template_store, tmp_path / "mlflow.db")
    monkeypatch.setattr(peer_loops, "BATCH", 5)  # 2 epochs x 6 metrics: three log_batch calls per trial
    batches: list[int] = []  # metrics per log_batch call of the loop's own (MLflow's fluent calls pass synchronous=)
    log_batch = mlflow.MlflowClient.log_batch

    def counted(self, run_id, metrics=(), **kwargs):
        if "synchronous" not in kwargs:
            batches.append(len(metrics))
        return log_batch(self, run_id, metrics, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", counted)
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(_body(2)))
    args = [str(study_file), str(tmp_path), "peer-test", "2", "1", str(tmp_path / "out.json")]
    try:  # the command the harness section runs, in this process
        assert peer_loops.main([*args, *(["--per-epoch"] if per_epoch else [])]) == 0
    finally:
        mlflow.set_tracking_uri(None)
    out = json.loads((tmp_path / "out.json").read_text())

    assert out["start"] <= out["end"] and [t["state"] for t in out["trials"]] == ["COMPLETE", "COMPLETE"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(out["run_id"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep:peer-test"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{out['run_id']}'", order_by=["attributes.start_time"]
    )
    assert [r.info.run_id for r in children] == [t["run_id"] for t in out["trials"]]
    study = optuna.load_study(
        study_name="peer-test", storage=JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    )
    assert [t.params for t in study.trials] == [t["params"] for t in out["trials"]]
    for run, trial, told in zip(children, out["trials"], study.trials, strict=True):
        assert run.info.status == "FINISHED" and run.info.run_name == f"trial-{trial['number']}"
        assert run.data.params == {k: str(v) for k, v in trial["params"].items()}
        for name in ("train_cost", "train_accuracy", "val_cost", "val_accuracy", "val_balanced_accuracy"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0, 1]
        val = [m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert run.data.metrics["value"] == val[-1] == told.value == told.intermediate_values[1]
        assert 0 <= run.data.metrics["test_accuracy"] <= 1
    # the careful loop sends its curves in log_batch calls of at most BATCH metrics, the tutorial loop none
    assert batches == ([] if per_epoch else [5, 5, 2, 5, 5, 2])


def test_every_function_the_step_timers_name_exists():
    """A renamed harness function would leave its step unmeasured: this names it."""
    missing = []
    for target in [t for targets in harness_steps.STEPS.values() for t in targets]:
        try:
            harness_steps.resolve(target)
        except (ImportError, AttributeError):
            missing.append(target)
    for target in (harness_steps.TRIAL_LOOP, harness_steps.RUN_SWEEP):
        harness_steps.resolve(target)
    assert missing == []


class _Toy:
    def outer(self, inner_seconds: float) -> str:
        time.sleep(0.02)
        return self.inner(inner_seconds)

    def inner(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"


def test_a_step_holds_its_own_time_not_that_of_the_timed_calls_inside_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        harness_steps, "STEPS", {"outer": [f"{__name__}:_Toy.outer"], "inner": [f"{__name__}:_Toy.inner"]}
    )
    timer = harness_steps.StepTimer()
    timer.install()
    try:
        start = time.perf_counter()
        assert _Toy().outer(0.03) == "done"
        wall = time.perf_counter() - start
    finally:
        timer.uninstall()
    assert not hasattr(_Toy.outer, "__wrapped__") and not hasattr(_Toy.inner, "__wrapped__")  # the originals are back
    own = {step: s for (_thread, phase, step), s in timer.seconds.items() if phase == "before"}
    calls = {step: n for (_thread, _phase, step), n in timer.calls.items()}
    assert calls == {"outer": 1, "inner": 1}
    assert own["inner"] >= 0.03 and own["outer"] >= 0.02
    assert own["outer"] <= wall - own["inner"] and own["outer"] + own["inner"] <= wall


def test_journal_reads_made_by_the_sampler_count_as_sampling(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        harness_steps,
        "STEPS",
        {"sampling": [f"{__name__}:_Toy.outer"], "storage reads": [f"{__name__}:_Toy.inner"]},
    )
    timer = harness_steps.StepTimer()
    timer.install()
    try:
        _Toy().outer(0.03)  # a read inside the sampler: sampling's
        _Toy().inner(0.0)  # a read on its own: a storage read
    finally:
        timer.uninstall()
    calls = {step: n for (_thread, _phase, step), n in timer.calls.items()}
    own = {step: s for (_thread, _phase, step), s in timer.seconds.items()}
    assert calls == {"sampling": 1, "storage reads": 1}
    assert own["sampling"] >= 0.05
