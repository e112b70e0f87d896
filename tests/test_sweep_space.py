"""Search-space and study-file errors fail before any trial, with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from sweeps.errors import UserError
from sweeps.search_space import SearchSpace, format_override
from sweeps.sweep import prepare

BASE = ["train.regularization=l2+dropout", "train.epoch=5"]


def _sweep_file(tmp_path: Path, space: dict, **extra) -> str:
    body = {"study_name": "t", "n_trials": 2, "space": space, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


@pytest.mark.parametrize(
    "space, fragment",
    [
        ({"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "low=0.1 must be smaller than high=0.01"),
        ({"optimizer.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"train.lambdd": {"type": "float", "low": 0.1, "high": 1.0}}, "'train.lambdd' is not a key"),
        ({"train.lambd": {"type": "gaussian", "low": 0.1, "high": 1.0}}, "type='gaussian' is invalid"),
        ({"train.lambd": {"type": "float", "low": 0.1, "hi": 1.0}}, "unknown key(s) ['hi']"),
        ({"train.mini_batch_size": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
        ({"optimizer": {"type": "categorical", "choices": ["adam", "lbfgs"]}}, "['lbfgs'] are not files of the config group"),
        ({"train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0}}, "has no effect: train.decay is None"),
        ({"train.decay": {"type": "categorical", "choices": [None, "continuous"]},
          "train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0}}, "has no effect when train.decay is None"),
        ({"optimizer.beta1": {"type": "float", "low": 0.8, "high": 0.99},
          "optimizer": {"type": "categorical", "choices": ["gd", "adam"]}}, "optimizer.beta1 has no effect when optimizer is 'gd'"),
        ({"train.decay": {"type": "categorical", "choices": ["discrete"]}}, "the discrete schedule would never step"),
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


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["sampler.name=annealing"], "sweep.sampler.name='annealing' is invalid: must be one of tpe, random, cmaes, qmc, grid"),
        (["pruner.name=patient"], "sweep.pruner.name='patient' is invalid: must be one of median, successive_halving, hyperband, none"),
        (["n_trials=0"], "sweep.n_trials=0 is invalid"),
        (["blas_threads=0"], "sweep.blas_threads=0 is invalid: must be >= 1"),
        (["metric=val_f1"], "sweep.metric='val_f1' is invalid"),
        (["n_trialz=3"], "n_trialz"),
        (["sampler.name=grid"], "the grid sampler needs 'choices' or a 'step'"),
    ],
)
def test_study_file_errors(tmp_path, overrides, fragment):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    with pytest.raises(UserError) as err:
        prepare(_sweep_file(tmp_path, space), overrides, BASE)
    assert fragment in str(err.value)


def test_unknown_sweep_name_lists_the_files():
    with pytest.raises(UserError, match=r"sweep='nope' is not a file of conf/sweep/ \(.*default"):
        prepare("nope", [], [])


def test_every_shipped_study_file_validates():
    conf = Path(__file__).resolve().parents[1] / "conf" / "sweep"
    names = sorted(p.stem for p in conf.glob("*.yaml"))
    assert "default" in names
    for name in names:
        if name == "cat":  # needs the HDF5 paths; checked in test_sweep_cat_file_needs_paths
            continue
        sweep_cfg, base_cfg, overrides, space = prepare(name, [], [])
        assert space.params, name


def test_sweep_cat_file_needs_paths():
    with pytest.raises(UserError, match="data.train_path"):
        prepare("cat", [], [])


def test_conditional_parameter_sampled_only_when_active(tmp_path):
    _, base_cfg, _, _ = prepare("default", [], [])
    from sweeps.config import CONF_DIR

    space = SearchSpace.from_config({
        "train.decay": {"type": "categorical", "choices": [None, "continuous"]},
        "train.decay_rate": {"type": "float", "low": 0.01, "high": 1.0, "log": True,
                             "when": {"train.decay": ["continuous"]}},
    }, base_cfg, CONF_DIR)
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


def test_cli_bad_space_exits_2_without_traceback(tmp_path):
    space = {"optimizer.learning_rate": {"type": "float", "low": 1.0, "high": 0.5}}
    path = _sweep_file(tmp_path, space)
    proc = subprocess.run([sys.executable, "-c", "from sweeps.sweep_cli import sweep_main; sweep_main()",
                           f"sweep={path}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
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
