"""The docs tell the truth: the quickstart runs, every config key they name exists.

Keys are checked against the schemas themselves (``numpynet.sweeps.training.config`` dataclasses
and the per-option ``*_SCHEMAS`` tables, ``numpynet.sweeps.search.settings.SweepConfig``),
so a key added to a schema is known here without editing this file.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.commands import run_command

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
# Keys the docs name on purpose as mistakes that are refused.
MISSPELT_ON_PURPOSE = {"optimizer.beta3", "train.epochs", "network.hiden"}
# The entry keys of one searched parameter in a study file's `space`.
SPACE_ENTRY_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
FILE_SUFFIXES = ("py", "yaml", "yml", "md", "h5", "npz", "csv", "log", "db", "png", "json")


def _fields(schema) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


def training_keys() -> set[str]:
    """``group.key`` for every key of the training config, read from the schema dataclasses."""
    from numpynet.sweeps.training import config

    keys: set[str] = set()
    for f in dataclasses.fields(config.Config):
        options = getattr(config, f"{f.name.upper()}_SCHEMAS", None)
        if options:  # a group whose options have their own keys: any option's key is a key
            names = set().union(*(_fields(s) for s in options.values()))
        else:
            names = _fields(f.default_factory())
        keys |= {f"{f.name}.{n}" for n in names}
    return keys


def sweep_fields() -> dict[str, dataclasses.Field]:
    from numpynet.sweeps.search.settings import SweepConfig

    return {f.name: f for f in dataclasses.fields(SweepConfig)}


def groups() -> set[str]:
    return {k.split(".")[0] for k in training_keys()}


def named_keys(text: str) -> set[str]:
    """Dotted config keys in ``text`` (prose, tables and commands), placeholders in capitals left out."""
    pattern = re.compile(rf"(?<![\w/.-])((?:{'|'.join(sorted(groups() | {'sweep'}))})\.[A-Za-z_][\w.]*)")
    found = set()
    for match in pattern.finditer(text):
        key = match.group(1).rstrip(".")
        if key.rsplit(".", 1)[-1] in FILE_SUFFIXES or re.search(r"[A-Z]", key):
            continue
        found.add(key)
    return found


def _is_known(key: str) -> bool:
    train = training_keys()
    if key in train:
        return True
    if not key.startswith("sweep."):
        return False
    path = key.split(".")[1:]
    fields = sweep_fields()
    if path[0] not in fields:
        return False
    if len(path) == 1:
        return True
    if path[0] == "space":  # sweep.space.<config path or group>[.<entry key>]
        rest = path[1:]
        if rest[-1] in SPACE_ENTRY_KEYS:
            rest = rest[:-1]
        target = ".".join(rest)
        return target in train or target in groups()
    # sampler, pruner: name (and seed), and any other key is an argument of the Optuna class
    return path[0] in ("sampler", "pruner")


def test_the_key_checker_can_fail():
    assert not _is_known("train.epochs") and not _is_known("sweep.n_trial")
    assert not _is_known("sweep.space.optimizer.learning_rat.low")
    assert _is_known("sweep.space.optimizer.learning_rate.low") and _is_known("sweep.space.optimizer")
    assert named_keys("see `train.epoch=5`, sweeps/train.py, `sweep.KEY=VALUE`, `data.path`.") == {
        "train.epoch",
        "data.path",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_named_in_the_docs_exists(page):
    keys = named_keys(page.read_text())
    unknown = sorted(k for k in keys - MISSPELT_ON_PURPOSE if not _is_known(k))
    assert unknown == [], f"{page.name} names keys the schemas do not have: {unknown}"
    for key in keys & MISSPELT_ON_PURPOSE:
        assert not _is_known(key), f"{key} is named as a mistake but is a real key"


def test_study_file_keys_in_the_docs_exist():
    text = (REPO / "docs" / "sweeps.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert blocks
    top = {m for block in blocks for m in re.findall(r"^([a-z_]+):", block, flags=re.M)}
    assert top and top <= set(sweep_fields()), top - set(sweep_fields())
    other = re.search(r"Other keys: (.*?)Sampler and pruner keys", text, flags=re.S).group(1)
    bare = set(re.findall(r"`([a-z_]+)`(?= \(| /|,)", other))  # the keys listed, not `pyfunc` model
    assert {"log_trial_models", "register_model", "top_k"} <= bare
    assert bare and bare <= set(sweep_fields()), bare - set(sweep_fields())


def test_no_internal_work_item_references():
    for page in PAGES:
        assert not re.search(r"\bissue \d+", page.read_text(), flags=re.I), page.name


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.(?:md|png))(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_readme_is_short_and_its_quickstart_is_make_sweep_and_make_test():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    assert block.split("\n")[:-1] == ["make sweep", "make test"]
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^sweep:.*\n((?:\t.*\n)+)", makefile, flags=re.M).group(1)
    assert recipe.strip() == "$(VENV)/bin/numpynet-sweep"  # the default sweep, no arguments
    assert re.search(r"^test:.*\n(?:\t.*\n)*\t\$\(PY\) -m pytest\n", makefile, flags=re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_quickstart_sweep_runs_and_prints_progress_to_a_pipe(tmp_path):
    """The quickstart's `numpynet-sweep`, reduced to 2 short trials, in an empty folder, output to pipes."""
    proc = run_command(
        "numpynet-sweep",
        [
            "sweep.n_trials=2",
            "train.epoch=6",
            "train.decay_interval=2",
            "network.hidden=[16]",
            "tracking.log_plots=false",
        ],
        tmp_path,
        tracking_uri=None,
        cold=True,
    )  # a plain interpreter, as a user's: a warning on import shows here too
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. matplotlib's "Tight layout not applied"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("trial ")]
    assert len(lines) == 2, proc.stderr
    for n, line in enumerate(lines):
        assert re.fullmatch(
            rf"trial \d+ (COMPLETE|PRUNED|FAIL) (value [0-9.]+|no value), "
            rf"(best [0-9.]+ \(trial \d+\)|no best yet) \| {n + 1}/2, "
            r"elapsed \d+:\d\d, ETA \d+:\d\d",
            line,
        ), line
    out = proc.stdout.splitlines()
    command = out[out.index("open the MLflow UI on this store:") + 1].strip()
    store = tmp_path / "mlruns" / "mlflow.db"
    assert command.endswith(f"mlflow ui --backend-store-uri sqlite:///{store} --port 5000 --workers 1")
    assert command.split()[0] == "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" and Path(command.split()[1]).is_absolute()
    address = out[out.index("then the runs table:") + 1].strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning", address)
    assert (tmp_path / "mlruns" / "optuna" / "journal.log").is_file()


def test_the_makefile_names_apt_get_with_one_space_as_root_and_as_a_user():
    """``make browser`` says what it runs: ``apt-get install`` as root, ``sudo apt-get install`` otherwise,
    never with the double space an empty ``$(SUDO)`` left."""
    for sudo in ("", "sudo"):
        out = subprocess.run(
            ["make", "-n", "-C", str(REPO), "browser", f"SUDO={sudo}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        said = re.search(r"for the browser tests: (.*?apt-get install chromium)", out)
        assert said and said[1] == f"{sudo} apt-get install chromium".strip(), out
        assert re.search(rf"&& {sudo} ?env DEBIAN_FRONTEND".replace("  ", " "), out), out


def test_the_docs_name_the_mlflow_range_the_project_pins():
    """The MLflow the docs describe is the MLflow the browser tests check: one range, pyproject.toml's."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [d.split("#")[0].strip() for d in deps if re.match(r"mlflow\b", d)]
    lowest = re.search(r">=(\d+\.\d+)", pin)[1]
    for page in (REPO / "README.md", REPO / "docs" / "training.md", REPO / "docs" / "testing.md"):
        text = page.read_text()
        assert f"`{pin}`" in text, (page.name, pin)
        assert f"What you see (MLflow {lowest}" in text or page.name == "testing.md", page.name
        assert not re.search(r"MLflow 3\.(?!%s)\d+\b" % re.escape(lowest.split(".")[1]), text), page.name
