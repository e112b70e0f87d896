"""Search-space and study-file errors fail before any trial, with a clear message."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.invocation import prepare
from numpynet.sweeps.search.samplers import make_sampler
from numpynet.sweeps.search.settings import SamplerConfig, load_sweep_config
from numpynet.sweeps.search.space import SearchSpace, format_override
from tests.helpers.commands import run_command

BASE = ["train.regularization=l2+dropout", "train.epoch=5"]


def _sweep_file(tmp_path: Path, space: dict, **extra) -> str:
    body = {"study_name": "t", "n_trials": 2, "space": space, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


@pytest.mark.parametrize(
    "space, fragment",
    [
        (
            {"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 0.01}},
            "low=0.1 must be smaller than high=0.01",
        ),
        (
            {"optimizer.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}},
            "log scale needs low > 0",
        ),
        ({"train.lambdd": {"type": "float", "low": 0.1, "high": 1.0}}, "'train.lambdd' is not a key"),
        ({"train.lambd": {"type": "gaussian", "low": 0.1, "high": 1.0}}, "type='gaussian' is invalid"),
        ({"train.lambd": {"type": "float", "low": 0.1, "hi": 1.0}}, "unknown key(s) ['hi']"),
        ({"train.mini_batch_size": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
        (
            {"optimizer": {"type": "categorical", "choices": ["adam", "lbfgs"]}},
            "['lbfgs'] are not files of the config group",
        ),
        ({"train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0}}, "has no effect: train.decay is None"),
        (
            {
                "train.decay": {"type": "categorical", "choices": [None, "continuous"]},
                "train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0},
            },
            "has no effect when train.decay is None",
        ),
        (
            {
                "optimizer.beta1": {"type": "float", "low": 0.8, "high": 0.99},
                "optimizer": {"type": "categorical", "choices": ["gd", "adam"]},
            },
            "optimizer.beta1 has no effect when optimizer is 'gd'",
        ),
        (
            {"train.lambd": {"type": "float", "low": float("nan"), "high": 1.0}},
            "low=nan is invalid: must be a finite number",
        ),
        (
            {"train.lambd": {"type": "float", "low": 0.1, "high": float("inf")}},
            "high=inf is invalid: must be a finite number",
        ),
        (
            {"train.lambd": {"type": "float", "low": float("-inf"), "high": 1.0}},
            "low=-inf is invalid: must be a finite number",
        ),
        ({"train.lambd": {"type": "float", "low": 0.1, "high": 1.0, "step": float("nan")}}, "step=nan is invalid"),
    ],
)
def test_space_errors(tmp_path, space, fragment):
    with pytest.raises(UserError) as err:
        prepare(_sweep_file(tmp_path, space), [], BASE)
    assert fragment in str(err.value)


def test_keep_prob_without_dropout_is_refused(tmp_path):
    space = {"train.keep_prob": {"type": "float", "low": 0.5, "high": 1.0}}
    with pytest.raises(UserError, match=r"train.keep_prob has no effect: train.regularization is None"):
        prepare(_sweep_file(tmp_path, space), [], ["train.epoch=5"])


_MOST_JOBS = 4 * (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            ["sampler.name=annealing"],
            "sweep.sampler.name='annealing' is invalid: must be one of tpe, random, cmaes, qmc, grid, gp",
        ),
        (
            ["pruner.name=patient"],
            "sweep.pruner.name='patient' is invalid: must be one of median, successive_halving, hyperband, none",
        ),
        (["n_trials=0"], "sweep.n_trials=0 is invalid"),
        (["blas_threads=0"], "sweep.blas_threads=0 is invalid: must be >= 1"),
        (["metric=val_f1"], "sweep.metric='val_f1' is invalid"),
        (["n_trialz=3"], "n_trialz"),
        (["sampler.name=grid"], "the grid sampler needs 'choices' or a 'step'"),
        (["sampler.seed=-1"], "sweep.sampler.seed=-1 is invalid: must be an integer in [0, 2**32-1]"),
        (["sampler.seed=nan"], "sweep.sampler.seed=nan is invalid: must be an integer in [0, 2**32-1]"),
        (["sampler.seed=1.5"], "sweep.sampler.seed=1.5 is invalid: must be an integer in [0, 2**32-1]"),
        (["sampler.seed=4294967296"], "sweep.sampler.seed=4294967296 is invalid: must be an integer in [0, 2**32-1]"),
        (["timeout=nan"], "sweep.timeout=nan is invalid: must be a finite number of seconds > 0, or null"),
        (["n_jobs=0"], "sweep.n_jobs=0 is invalid: worker processes on this machine, from 1 to "),
        (
            [f"n_jobs={_MOST_JOBS + 1}"],
            f"sweep.n_jobs={_MOST_JOBS + 1} is invalid: worker processes on this machine, "
            f"from 1 to {_MOST_JOBS} (4 per core)",
        ),
        (["timeout=inf"], "sweep.timeout=inf is invalid: must be a finite number of seconds > 0, or null"),
        (["timeout=-5"], "sweep.timeout=-5.0 is invalid: must be a finite number of seconds > 0, or null"),
        (["timeout=0"], "sweep.timeout=0.0 is invalid: must be a finite number of seconds > 0, or null"),
        (
            ["metric=val_cost"],
            "sweep.metric=val_cost with sweep.direction=maximize would pick the worst trial "
            "(a cost is best when lowest); set sweep.direction=minimize",
        ),
        (["metric=train_cost"], "sweep.metric=train_cost with sweep.direction=maximize"),
        (
            ["direction=minimize"],
            "sweep.metric=val_accuracy with sweep.direction=minimize would pick the worst trial "
            "(an accuracy is best when highest); set sweep.direction=maximize",
        ),
        (["metric=val_balanced_accuracy", "direction=minimize"], "set sweep.direction=maximize"),
        (["top_k=0"], "sweep.top_k=0 is invalid: must be an integer >= 1"),
        (["retry_failed=-1"], "sweep.retry_failed=-1 is invalid: must be an integer >= 0"),
        (["heartbeat_interval=0"], "sweep.heartbeat_interval=0 is invalid: must be an integer >= 1 (seconds), or null"),
        (["grace_period=-5"], "sweep.grace_period=-5 is invalid: must be an integer >= 1 (seconds), or null"),
    ],
)
def test_study_file_errors(tmp_path, overrides, fragment):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    with pytest.raises(UserError) as err:
        prepare(_sweep_file(tmp_path, space), overrides, BASE)
    assert fragment in str(err.value)


def test_the_study_keys_accept_their_limits_and_null(tmp_path):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    cfg = load_sweep_config(
        _sweep_file(tmp_path, space),
        [
            "sampler.seed=4294967295",
            "timeout=0.5",
            "metric=val_cost",
            "direction=minimize",
            "top_k=1",
            "retry_failed=0",
            "heartbeat_interval=null",
            "grace_period=1",
        ],
    )
    assert (cfg.sampler.seed, cfg.timeout, cfg.heartbeat_interval) == (2**32 - 1, 0.5, None)
    assert (
        load_sweep_config(_sweep_file(tmp_path, space), ["sampler.seed=null", "grace_period=null"]).sampler.seed is None
    )
    # worker k is seeded seed + k, which wraps around instead of leaving numpy's range
    assert make_sampler(SamplerConfig(name="random", seed=2**32 - 1), None, 1) is not None


BASELINE_SPACE = {
    "train.seed": {"type": "int", "low": 0, "high": 9},
    "train.decay": {"type": "categorical", "choices": [None, "continuous"]},
    "train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0, "when": {"train.decay": ["continuous"]}},
}


@pytest.mark.parametrize(
    "baseline, fragment",
    [
        (
            ["train.seed=1", "train.decay=null", "train.seed=2"],
            "sweep.baseline: train.seed is set twice (1, then 'train.seed=2'); a baseline sets each searched key once",
        ),
        (
            ["train.seed=1.5", "train.decay=null"],
            "sweep.baseline: train.seed=1.5 is invalid: must be an integer in [0, 9]",
        ),
        (["train.seed=true", "train.decay=null"], "train.seed=True is invalid: must be an integer in [0, 9]"),
        (["train.seed=12", "train.decay=null"], "train.seed=12 is outside the searched range [0, 9]"),
        (
            ["train.seed=1", "train.decay=null", "train.decay_rate=0.5"],
            "sweep.baseline: train.decay_rate has no effect when train.decay=None "
            "(it applies when train.decay is one of "
            "['continuous']); drop it from the baseline",
        ),
    ],
)
def test_a_baseline_is_refused_by_key(tmp_path, baseline, fragment):
    with pytest.raises(UserError) as err:
        prepare(_sweep_file(tmp_path, BASELINE_SPACE, baseline=baseline), [], BASE)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_baseline_that_sets_each_active_key_once_is_accepted(tmp_path):
    for baseline in (
        ["train.seed=1", "train.decay=null"],
        ["train.seed=1", "train.decay=continuous", "train.decay_rate=0.5"],
    ):
        sweep_cfg, _, _, space = prepare(_sweep_file(tmp_path, BASELINE_SPACE, baseline=baseline), [], BASE)
        assert len(space.fixed_params([str(o) for o in sweep_cfg.baseline])) == len(baseline)


def test_unknown_sweep_name_lists_the_files():
    with pytest.raises(UserError, match=r"sweep='nope' is not a file of conf/sweep/ \(.*default"):
        prepare("nope", [], [])


@pytest.mark.slow
def test_every_shipped_study_file_validates():
    conf = Path(__file__).resolve().parents[2] / "conf" / "sweep"
    names = sorted(p.stem for p in conf.glob("*.yaml"))
    assert "default" in names
    for name in names:
        if name in ("cat", "small"):  # need data files: test_sweep_cat_file_needs_paths, ..._small_file_...
            continue
        sweep_cfg, base_cfg, overrides, space = prepare(name, [], [])
        assert space.params, name


def test_sweep_cat_file_needs_paths():
    with pytest.raises(UserError, match="data.train_path"):
        prepare("cat", [], [])


def test_sweep_small_file_needs_a_data_path_and_validates_with_one(tmp_path):
    with pytest.raises(UserError, match="data.path is not set"):
        prepare("small", [], [])
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.normal(size=(60, 4)), y=np.arange(60) % 2)
    sweep_cfg, base_cfg, overrides, space = prepare("small", [], [f"data.path={path}"])
    assert base_cfg.data.name == "file" and base_cfg.data.standardize is True
    assert sweep_cfg.cv == 5 and sweep_cfg.refit_rule == "fold_ensemble" and space.params


def test_conditional_parameter_sampled_only_when_active(tmp_path):
    _, base_cfg, _, _ = prepare("default", [], [])
    from numpynet.sweeps.training.config import CONF_DIR

    space = SearchSpace.from_config(
        {
            "train.decay": {"type": "categorical", "choices": [None, "continuous"]},
            "train.decay_rate": {
                "type": "float",
                "low": 0.01,
                "high": 1.0,
                "log": True,
                "when": {"train.decay": ["continuous"]},
            },
        },
        base_cfg,
        CONF_DIR,
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        sampled = space.sample(trial)
        seen.add(sampled["train.decay"])
        assert ("train.decay_rate" in sampled) == (sampled["train.decay"] == "continuous")
        study.tell(trial, 0.0)
    assert seen == {None, "continuous"}


def test_overrides_format_for_hydra():
    assert format_override("network.hidden", [64, 32]) == "network.hidden=[64,32]"
    assert format_override("train.decay", None) == "train.decay=null"
    assert format_override("train.regularization", "l2+dropout") == "train.regularization=l2+dropout"
    assert format_override("optimizer.learning_rate", 1e-05) == "optimizer.learning_rate=1e-05"


@pytest.mark.slow
def test_cli_bad_space_exits_2_without_traceback(tmp_path):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1.0, "high": 0.5}}
    path = _sweep_file(tmp_path, space)
    proc = run_command("numpynet-sweep", [f"sweep={path}"], tmp_path, tracking_uri=None, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "low=1.0 must be smaller than high=0.5" in proc.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing started


def test_a_fixed_value_for_a_searched_key_is_an_error_not_silently_ignored(tmp_path):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    with pytest.raises(UserError, match=r"optimizer.learning_rate is searched by this sweep"):
        prepare(_sweep_file(tmp_path, space), [], BASE + ["optimizer.learning_rate=0.5"])
    with pytest.raises(UserError, match=r"invalid sweep config .*sweep.n_jobs: Value 'abc'"):
        prepare(_sweep_file(tmp_path, space), ["n_jobs=abc"], BASE)


# ------------------------------------------ issue 10, items 6, 18, 19
@pytest.mark.slow
def test_a_nan_bound_in_a_study_file_fails_before_any_run_or_trial(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("study_name: t\nn_trials: 2\nspace:\n  train.lambd: {type: float, low: .nan, high: 1.0}\n")
    proc = run_command(
        "numpynet-sweep", [f"sweep={path}", "train.regularization=l2"], tmp_path, tracking_uri=None, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "sweep.space.train.lambd.low=nan is invalid: must be a finite number" in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # no study, no MLflow run


def test_one_bound_of_a_searched_key_changes_from_the_command_line(tmp_path):
    _, _, _, space = prepare(
        "default", ["space.optimizer.learning_rate.low=0.001", "space.train.keep_prob.high=0.9"], []
    )
    by_path = {p.path: p for p in space.params}
    lr = by_path["optimizer.learning_rate"]
    assert (lr.low, lr.high, lr.log) == (0.001, 3.0e-2, True)  # the other keys of the entry are kept
    assert (by_path["train.keep_prob"].low, by_path["train.keep_prob"].high) == (0.6, 0.9)
    # the file's order is kept: train.decay_rate still follows train.decay, which it depends on
    paths = [p.path for p in space.params]
    assert paths.index("train.decay") < paths.index("train.decay_rate")
    assert len(paths) == len(set(paths)) == 7


def test_a_bound_change_under_a_searched_config_group(tmp_path):
    _, _, _, space = prepare(
        "architecture", ["space.optimizer.learning_rate.high=0.01", "space.optimizer.choices=[adam,momentum]"], []
    )
    by_path = {p.path: p for p in space.params}
    assert by_path["optimizer"].choices == ("adam", "momentum")
    assert by_path["optimizer.learning_rate"].high == 0.01


def test_a_nested_study_file_means_the_same_as_a_flat_one(tmp_path):
    flat = {
        "optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "train.lambd": {"type": "float", "low": 0.1, "high": 1.0},
    }
    nested = {
        "optimizer": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "train": {"lambd": {"type": "float", "low": 0.1, "high": 1.0}},
    }
    base = ["train.regularization=l2"]
    a = prepare(_sweep_file(tmp_path, flat), [], base)[3].params
    b = prepare(_sweep_file(tmp_path, nested), [], base)[3].params
    assert a == b


def test_a_bound_of_a_key_the_study_does_not_search_is_refused_by_name(tmp_path):
    with pytest.raises(
        UserError,
        match=r"sweep.space.train.epoch.high: 'train.epoch' is not searched by this study "
        r"\(searched: optimizer.learning_rate, .*\); to add it, give its type too",
    ):
        prepare("default", ["space.train.epoch.high=10"], [])
    with pytest.raises(UserError, match=r"give its type too, e.g. sweep.space.train.epoch.type=int$"):
        prepare("default", ["space.train.epoch.high=10"], [])  # an int bound: an int parameter


@pytest.mark.slow
def test_cli_bound_override_runs_a_sweep_with_that_bound(store):
    tmp_path = store  # the default local stores, the MLflow one already migrated (conftest.py)
    proc = run_command(
        "numpynet-sweep",
        [
            "sweep.n_trials=2",
            "sweep.study_name=cli-bound",
            "sweep.pruner.name=none",
            "sweep.space.optimizer.learning_rate.low=0.02",
            "sweep.space.optimizer.learning_rate.high=0.025",
            "train.epoch=2",
            "network.hidden=[8]",
            "tracking.log_plots=false",
        ],
        tmp_path,
        tracking_uri=None,
    )
    assert proc.returncode == 0, proc.stderr
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(
        study_name="cli-bound",
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "mlruns" / "optuna" / "journal.log"))),
    )
    rates = [t.params["optimizer.learning_rate"] for t in study.trials]
    assert len(rates) == 2 and all(0.02 <= r <= 0.025 for r in rates), rates


@pytest.mark.slow
def test_a_quick_try_with_few_epochs_runs_and_warns_that_discrete_decay_never_steps(store):
    proc = run_command(
        "numpynet-sweep",
        [
            "train.epoch=5",
            "sweep.n_trials=2",
            "sweep.study_name=quick",
            "network.hidden=[8]",
            "tracking.log_plots=false",
        ],
        store,
        tracking_uri=None,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train.decay_interval=20 >= train.epoch=5: the discrete schedule never steps" in proc.stderr
    assert "study 'quick': 2 complete" in proc.stdout


@pytest.mark.slow
def test_an_error_while_sampling_ends_the_trial_fail_and_no_run_stays_running(tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    from numpynet.sweeps.search.invocation import run_sweep
    from numpynet.sweeps.search.space import SearchSpace as Space

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    real_sample = Space.sample

    def broken(self, trial):
        if trial.study.study_name != "boom":  # the dry sample checked before the first trial
            return real_sample(self, trial)
        raise OverflowError("sampler blew up")

    monkeypatch.setattr(Space, "sample", broken)
    with pytest.raises(UserError, match="OverflowError: sampler blew up"):
        run_sweep("default", ["n_trials=2", "study_name=boom"], ["train.epoch=2", "tracking.log_plots=false"])
    study = optuna.load_study(
        study_name="boom",
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "mlruns" / "optuna" / "journal.log"))),
    )
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("OverflowError: sampler blew up" in t.user_attrs["fail_reason"] for t in study.trials)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
