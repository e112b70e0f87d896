"""``import numpynet`` stays light: numpy and the standard library only."""

from __future__ import annotations

import json

from tests.helpers.core import run_python

HEAVY = [
    "optuna",
    "mlflow",
    "hydra",
    "omegaconf",
    "matplotlib",
    "sklearn",
    "scipy",
    "h5py",
    "pandas",
    "torch",
    "threadpoolctl",
]

SCRIPT = r"""
import json, sys
import numpynet
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_import_numpynet_pulls_in_no_harness_library():
    loaded = set(json.loads(run_python(SCRIPT)))
    assert {"numpynet", "numpy"} <= loaded  # the probe does see what gets imported
    assert sorted(loaded & set(HEAVY)) == []


def test_the_public_names_are_importable_from_the_package():
    out = run_python("import numpynet; print(numpynet.NeuralNetwork.__name__, numpynet.TrainingDiverged.__name__)")
    assert out.split() == ["NeuralNetwork", "TrainingDiverged"]
