"""numpynet-sweep's arguments as Hydra reads them: --help, --cfg, the override grammar, refused flags.

In-process (``sweep_main(argv)``) in an empty folder that must stay empty:
none of these runs a trial or opens a store. One test runs the console
script, for the exit status and the traceback switch of a real process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from numpynet.sweeps.cli.config_groups import sweep_groups
from numpynet.sweeps.cli.summary import ui_command
from numpynet.sweeps.cli.sweep import sweep_main
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.search.overrides import split_overrides
from numpynet.sweeps.search.settings import SamplerConfig, SweepConfig, load_sweep_config, load_sweep_node
from numpynet.sweeps.training.config import CONF_DIR, compose_config
from tests.helpers.commands import run_command

STUDY_FILES = sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder without MLFLOW_TRACKING_URI: a sweep would create ./mlruns here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # a run's logging setup sets these when unset, for good
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``sweep_main(argv)``: (exit status, stdout, stderr)."""
    try:
        sweep_main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _cfg(argv: list[str], capsys) -> dict:
    code, out, err = _run([*argv, "--cfg", "job"], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


# --------------------------------------------------------------------------------------------- --help
def test_help_is_hydras_help_with_the_study_files_as_the_sweep_group(empty_cwd, capsys):
    code, out, err = _run(["--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith("numpynet-sweep: an Optuna hyperparameter search")
    assert "Usage: numpynet-sweep [sweep=NAME]" in out
    section = out.split("== Configuration groups ==", 1)[1].split("== Study", 1)[0]
    listed = dict(line.split(": ", 1) for line in section.strip().splitlines()[1:] if ": " in line)
    assert listed["sweep"].split(", ") == STUDY_FILES
    assert {g: o.split(", ") for g, o in listed.items()} == sweep_groups()
    assert {"data", "network", "optimizer", "tracking", "sweep"} <= set(listed)
    study = yaml.safe_load(out.split("== Study (sweep.KEY=VALUE) ==", 1)[1].split("\n\n", 2)[1])
    assert list(study["sweep"]) == [f.name for f in dataclasses.fields(SweepConfig)]  # every key of the schema
    assert study["sweep"]["study_name"] == "digits-default"  # conf/sweep/default.yaml
    assert ui_command("sqlite:///mlruns/mlflow.db") in out  # the footer, its resolver filled in
    assert "${" not in out and "$CONFIG" not in out
    assert not list(empty_cwd.iterdir()), "--help wrote files"


def test_help_shows_the_study_the_overrides_compose(empty_cwd, capsys):
    code, out, err = _run(["sweep=architecture", "sweep.n_trials=7", "-h"], capsys)
    assert code == 0, err
    study = yaml.safe_load(out.split("== Study (sweep.KEY=VALUE) ==", 1)[1].split("\n\n", 2)[1])["sweep"]
    assert study["n_trials"] == 7
    assert study["study_name"] == load_sweep_config("architecture").study_name


# ---------------------------------------------------------------------------------------------- --cfg
def test_cfg_job_prints_the_training_config_and_the_study_and_creates_nothing(empty_cwd, capsys):
    cfg = _cfg(["sweep.n_trials=5", "network.hidden=[128,64]", "tracking.run_name=null"], capsys)
    assert set(cfg) == {"data", "network", "optimizer", "train", "tracking", "sweep"}
    assert cfg["sweep"]["n_trials"] == 5 and cfg["sweep"]["study_name"] == "digits-default"
    assert cfg["network"]["hidden"] == [128, 64]
    # the training config is what every trial starts from: the study's fixed overrides, then the command line's
    study = load_sweep_config("default")
    base = compose_config([*study.overrides, "network.hidden=[128,64]", "tracking.run_name=null"])
    assert {k: v for k, v in cfg.items() if k != "sweep"} == OmegaConf.to_container(base)
    assert cfg["train"]["epoch"] == 60  # from conf/sweep/default.yaml's overrides, not config.yaml's 200
    assert not list(empty_cwd.iterdir()), "--cfg job created files (a store, mlruns/, outputs/)"


def test_cfg_follows_hydras_grammar_for_the_study(empty_cwd, capsys):
    cfg = _cfg(
        [
            "sweep.space.optimizer.learning_rate.low=1e-3",  # one key of a searched parameter
            "~sweep.space.train.lambd",  # stop searching it
            "+sweep.sampler.n_ei_candidates=12",  # a key the file does not set
            "~sweep.pruner.reduction_factor",
            "sweep.timeout=null",
            "sweep.study_name='my study'",
            "++sweep.top_k=3",
        ],
        capsys,
    )
    sweep = cfg["sweep"]
    lr = sweep["space"]["optimizer.learning_rate"]
    assert (lr["low"], lr["high"], lr["log"]) == (1.0e-3, 3.0e-2, True)
    assert "train.lambd" not in sweep["space"] and "train.keep_prob" in sweep["space"]
    assert sweep["sampler"] == {"name": "tpe", "seed": 0, "n_startup_trials": 10, "n_ei_candidates": 12}
    assert sweep["pruner"] == {"name": "successive_halving", "min_resource": 5}
    assert (sweep["timeout"], sweep["study_name"], sweep["top_k"]) == (None, "my study", 3)


def test_a_study_file_outside_conf_sweep_is_the_sweep_option(empty_cwd, capsys):
    path = empty_cwd / "studies" / "mine.yaml"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump(
            {
                "study_name": "mine",
                "n_trials": 3,
                "overrides": ["train.epoch=4"],
                "space": {"train.seed": {"type": "int", "low": 0, "high": 9}},
            }
        )
    )
    cfg = _cfg([f"sweep={path}", "sweep.n_trials=4"], capsys)
    assert (cfg["sweep"]["study_name"], cfg["sweep"]["n_trials"], cfg["train"]["epoch"]) == ("mine", 4, 4)
    assert cfg["sweep"]["space"] == {"train.seed": {"type": "int", "low": 0, "high": 9}}


def test_cfg_hydra_all_and_package(empty_cwd, capsys):
    code, out, err = _run(["--cfg", "hydra"], capsys)
    assert code == 0, err
    hydra = yaml.safe_load(out)["hydra"]
    assert hydra["job"]["name"] == "numpynet-sweep" and hydra["runtime"]["choices"]["hydra/help"] == "numpynet_sweep"
    assert "help" not in hydra  # as Hydra's --cfg hydra
    code, out, err = _run(["--cfg=all", "sweep.n_jobs=2"], capsys)
    assert code == 0, err
    assert {"hydra", "sweep", "train"} <= set(yaml.safe_load(out)) and yaml.safe_load(out)["sweep"]["n_jobs"] == 2
    code, out, err = _run(["-c", "job", "--package", "sweep.sampler"], capsys)
    assert code == 0, err
    assert out.startswith("# @package sweep.sampler\n") and yaml.safe_load(out) == OmegaConf.to_container(
        load_sweep_node().sampler
    )
    import hydra

    assert _run(["--version"], capsys)[1] == f"Hydra {hydra.__version__}\n"  # as numpynet-train --version
    assert not list(empty_cwd.iterdir())


# ----------------------------------------------------------------------------- errors: one line, exit 2
@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["network.hidden=[128,64"],
            ["network.hidden=[128,64: not an override in Hydra's grammar", "allowed: KEY=VALUE"],
        ),
        (
            ["sweep.storage=postgresql://u@h/db?sslmode=require"],
            ["sweep.storage=postgresql://u@h/db?sslmode=require", "quote a value"],
        ),
        (["train.epochs=5"], ["train.epochs=5: train has no key 'epochs' (its keys: epoch, mini_batch_size"]),
        (["optimizer.beta3=0.5"], ["optimizer.beta3=0.5: optimizer has no key 'beta3' (its keys: name, learning_rate"]),
        (
            ["data.path=/x.npz"],
            ["data.path=/x.npz: data has no key 'path'", "data=file has it: e.g. data=file data.path=/x.npz"],
        ),
        (
            ["sweep.space.network.hidden.choices=[[32],[64,32]]"],
            ["'network.hidden' is not searched by this study", "e.g. sweep.space.network.hidden.type=categorical"],
        ),
        (["sweep.n_trial=5"], ["sweep.n_trial=5: the study has no key 'n_trial' (its keys: study_name", "n_trials"]),
        (["sweep.n_jobs=two"], ["sweep.n_jobs: Value 'two'", "could not be converted to Integer"]),
        (["train.epoch=many"], ["train.epoch=many", "could not be converted to Integer"]),
        (["data=nope"], ["Could not find 'data/nope'", "breast_cancer; catvnoncat; digits; file"]),
        (["sweep=nope"], ["sweep='nope' is not a file of conf/sweep/ (architecture, cat, default, small)"]),
        (["+sweep.n_trials=3"], ["+sweep.n_trials=3: sweep.n_trials is set already", "++sweep.n_trials=3"]),
        (["~sweep.space.train.epochs"], ["~sweep.space.train.epochs: not a parameter of the study's space"]),
        (["train.seed=1,2"], ["train.seed=1,2: a list or range of values to try is a Hydra multirun sweep"]),
        (["~sweep"], ["~sweep: the study is chosen with sweep=NAME"]),
        (
            ["network.activation=é"],
            [
                "network.activation=é: not an override in Hydra's grammar (unexpected 'é' at character 20)",
                "quote a value that holds spaces, non-ASCII letters",
                "e.g. 'network.activation=\"é\"'",
            ],
        ),
        (["sweep.sampler.seed=-1"], ["sweep.sampler.seed=-1 is invalid: must be an integer in [0, 2**32-1]"]),
        (["sweep.sampler.seed=nan"], ["sweep.sampler.seed=nan is invalid: must be an integer in [0, 2**32-1]"]),
        (["sweep.timeout=nan"], ["sweep.timeout=nan is invalid: must be a finite number of seconds > 0, or null"]),
        (
            ["sweep.metric=val_cost"],
            ["sweep.metric=val_cost with sweep.direction=maximize", "sweep.direction=minimize"],
        ),
        (["sweep.grace_period=-5"], ["sweep.grace_period=-5 is invalid: must be an integer >= 1 (seconds), or null"]),
        (["data.seed=-1"], ["data.seed=-1 is invalid: must be an integer in [0, 2**32-1]"]),
        (["tracking.experiment=''"], ["tracking.experiment='' is invalid: must be a non-empty MLflow experiment name"]),
    ],
)
def test_a_bad_override_is_one_line_naming_it_and_exit_2(empty_cwd, capsys, args, fragments):
    for extra in ([], ["--cfg", "job"]):  # refused before a run, and before printing the config
        code, out, err = _run([*args, *extra], capsys)
        assert code == 2, (args, out, err)
        assert err.count("\n") == 1 and err.startswith("numpynet-sweep: error: "), err
        for fragment in fragments:
            assert fragment in err, err
        assert "Traceback" not in err
    assert not list(empty_cwd.iterdir()), "a refused command created files"


@pytest.mark.parametrize(
    "flag, why",
    [
        ("-m", "not a Hydra multirun"),
        ("--multirun", "not a Hydra multirun"),
        ("-cn=best_config", "composes conf/config.yaml with a study of conf/sweep/"),
        ("--config-name", "composes conf/config.yaml"),
        ("--config-dir", "composes conf/config.yaml"),
        ("-cp", "composes conf/config.yaml"),
        ("--experimental-rerun", "run the same command again to resume"),
        ("--info", "--cfg job"),
        ("--hydra-help", "numpynet-sweep --help"),
        ("-sc", "no shell completion"),
        ("--cfg", "--cfg needs a value: one of job, hydra, all"),
        ("--cfg=everything", "one of job, hydra, all"),
        ("--verbose", "unknown option"),
    ],
)
def test_flags_a_sweep_has_no_use_for_are_refused_in_one_line(empty_cwd, capsys, flag, why):
    code, out, err = _run(["sweep.n_trials=1", flag], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"numpynet-sweep: error: {flag.split('=')[0]}") and why in err, err
    assert not list(empty_cwd.iterdir())


def test_debug_shows_the_error_itself(empty_cwd, capsys):
    with pytest.raises(UserError, match="the study has no key 'n_trial'"):
        sweep_main(["sweep.n_trial=5", "--debug"])


# --------------------------------------------------------------------------- the split, the study's ops
def test_overrides_split_between_the_study_and_the_training_config():
    name, study, training = split_overrides(
        [
            "sweep=cat",
            "sweep.n_trials=3",
            "+sweep.sampler.n_ei_candidates=5",
            "~sweep.baseline",
            "++sweep.top_k=2",
            "network.hidden=[128,64]",
            "+train.extra=1",
            "~experiment",
            "data.train_path='/a b/train.h5'",
        ]
    )
    assert name == "cat"
    assert study == ["n_trials=3", "+sampler.n_ei_candidates=5", "~baseline", "++top_k=2"]
    assert training == ["network.hidden=[128,64]", "+train.extra=1", "~experiment", "data.train_path='/a b/train.h5'"]
    assert split_overrides([]) == ("default", [], [])


def test_deleting_a_study_key_restores_the_schema_default(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study_name": "s",
                "top_k": 9,
                "baseline": ["train.seed=3"],
                "space": {"train.seed": {"type": "int", "low": 0, "high": 9}},
            }
        )
    )
    study = load_sweep_config(str(path), ["~top_k", "~baseline"])
    assert (study.top_k, study.baseline) == (SweepConfig.top_k, None)
    # a key of a nested part of the schema goes back to its default too; a key of the open mapping goes
    study = load_sweep_config(str(path), ["sampler.seed=7", "sampler.n_startup_trials=3", "~sampler.seed"])
    assert (study.sampler.seed, study.sampler.arguments()) == (SamplerConfig.seed, {"n_startup_trials": 3})
    assert load_sweep_config(str(path), ["pruner.n_warmup_steps=2", "~pruner.n_warmup_steps"]).pruner.arguments() == {}
    with pytest.raises(UserError, match=r"~sweep.sampler.n_startup_trials: the study has no sweep.sampler.n_startup"):
        load_sweep_config(str(path), ["~sampler.n_startup_trials"])


@pytest.mark.slow
def test_the_console_script_exits_2_in_one_line_and_hydra_full_error_shows_the_traceback(tmp_path):
    proc = run_command("numpynet-sweep", ["network.hidden=[128,64", "sweep.n_trials=1"], tmp_path, tracking_uri=None)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "network.hidden=[128,64" in proc.stderr
    full = run_command(
        "numpynet-sweep", ["-m", "sweep.n_trials=1"], tmp_path, tracking_uri=None, env={"HYDRA_FULL_ERROR": "1"}
    )
    assert (
        full.returncode == 1
        and "Traceback (most recent call last)" in full.stderr
        and "not a Hydra multirun" in full.stderr
    )
    assert not list(tmp_path.iterdir())
