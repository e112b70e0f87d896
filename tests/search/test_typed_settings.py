"""The study's settings are one typed object from loading to their last use.

``load_sweep_config`` returns a :class:`SweepConfig` (``OmegaConf.to_object``),
whose ``sampler`` and ``pruner`` are typed too; each default is stated once,
in the schema. The harness reads the settings as attributes only: a
string-keyed read (``sweep.get("objective", "final")``, ``sweep["n_trials"]``)
would be a second place for a key's name and default.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from numpynet.sweeps.search.settings import PrunerConfig, SamplerConfig, SweepConfig, load_sweep_config

REPO = Path(__file__).resolve().parents[2]
#: a read of the settings by key, under any name they travel as (``sweep``, ``plan.sweep``, ``sweep_cfg``)
STRING_KEYED = re.compile(r"\bsweep(?:_cfg)?(?:\.get\(|\[)")


def string_keyed_reads(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if STRING_KEYED.search(line)]


def test_the_settings_are_typed_down_to_the_sampler_and_the_pruner():
    sweep = load_sweep_config("default", ["n_trials=5"])
    assert type(sweep) is SweepConfig and sweep.n_trials == 5
    assert type(sweep.sampler) is SamplerConfig and type(sweep.pruner) is PrunerConfig
    # conf/sweep/default.yaml: the keys beyond the schema's are the Optuna classes' arguments
    assert (sweep.sampler.name, sweep.sampler.seed, sweep.sampler.arguments()) == ("tpe", 0, {"n_startup_trials": 10})
    assert (sweep.pruner.name, sweep.pruner.arguments()) == (
        "successive_halving",
        {"min_resource": 5, "reduction_factor": 3},
    )
    assert sweep.maximize and not load_sweep_config("default", ["metric=val_cost", "direction=minimize"]).maximize


def test_a_key_the_study_file_leaves_out_takes_the_schema_default(tmp_path):
    path = tmp_path / "bare.yaml"
    path.write_text("study_name: bare\nsampler: {name: random}\npruner: {min_resource: 2}\n")
    sweep = load_sweep_config(str(path))
    assert (sweep.objective, sweep.top_k, sweep.check_setup) == (
        SweepConfig.objective,
        SweepConfig.top_k,
        SweepConfig.check_setup,
    )
    assert (sweep.sampler.name, sweep.sampler.seed) == ("random", SamplerConfig.seed)
    assert (sweep.pruner.name, sweep.pruner.arguments()) == (PrunerConfig.name, {"min_resource": 2})


@pytest.mark.parametrize(
    "line",
    ['objective = sweep.get("objective", "final")', 'n = plan.sweep["n_trials"]', "s = sweep_cfg['space']"],
)
def test_the_scan_finds_a_string_keyed_read(line):
    assert string_keyed_reads(f"x = 1\n{line}\n") == [line]


def test_no_string_keyed_reads_of_the_settings_remain():
    found = {
        str(path.relative_to(REPO)): reads
        for folder in ("sweeps", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        if (reads := string_keyed_reads(path.read_text()))
    }
    assert found == {}
