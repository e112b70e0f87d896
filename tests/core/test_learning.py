"""The network learns: scikit-learn's digits and the original cat / non-cat task.

Documented digits configuration (the one the issue's speed target uses):
``[64, 64, 32, 10]``, relu, adam, learning rate 1e-3, batches of 32, 100
epochs, seed 0 (the default), pixels / 16, stratified 80/20 split with
random_state 0. Measured: 0.975 test accuracy.

Cat / non-cat with the original configuration: ``[12288, 20, 7, 5, 1]``, relu,
gd, learning rate 0.01, batches of 32, 501 epochs, pixels / 255, seeds 1 to 5
(all of them, never a chosen subset). Measured: train accuracy 0.967 to 1.0,
test accuracy 0.72 / 0.86 / 0.78 / 0.72 / 0.76, mean 0.768.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numpynet import NeuralNetwork
from tests.helpers import core
from tests.helpers.core import SINGLE_THREAD_ENV, finish, require_cat_data, start_python


def test_digits_reach_097_test_accuracy():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.2, stratify=y, random_state=0)
    net = NeuralNetwork(
        [64, 64, 32, 10],
        activation_function="relu",
        optimizer="adam",
        learning_rate=1e-3,
        mini_batch_size=32,
        epoch=100,
    ).fit(X_train, y_train)
    accuracy = net.score(X_test, y_test)
    assert accuracy >= 0.97, f"digits test accuracy {accuracy:.4f} < 0.97"
    assert net.costs_[-1] < net.costs_[0]


# One worker trains the seeds it is given and prints their accuracies. Two
# single-threaded workers share the 2 cores. Measured on the 2-core machine
# while other jobs ran: 24 s wall / 35 s CPU this way, against 104 s wall /
# 96 s CPU for the five seeds in this process with two BLAS threads (threaded
# OpenBLAS degrades badly on shared cores). Results do not depend on the
# thread count (checked bit for bit).
CAT_WORKER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.helpers.core import load_catvnoncat
from numpynet import NeuralNetwork

X_train, y_train, X_test, y_test = load_catvnoncat()
out = {}
for seed in map(int, sys.argv[2].split(",")):
    net = NeuralNetwork([12288, 20, 7, 5, 1], seed=seed, activation_function="relu", optimizer="gd",
                        learning_rate=0.01, mini_batch_size=32, epoch=501).fit(X_train, y_train)
    out[seed] = {"train": net.score(X_train, y_train), "test": net.score(X_test, y_test),
                 "final_cost": net.costs_[-1]}
print(json.dumps(out))
"""

CAT_SEEDS = [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_catvnoncat_with_the_original_configuration():
    require_cat_data()  # skips locally without the data, fails in CI (NUMPYNET_REQUIRE_CAT_DATA=1)
    repo = str(Path(__file__).resolve().parents[2])  # where the worker finds tests.helpers
    shares = [CAT_SEEDS[0::2], CAT_SEEDS[1::2]]  # [1, 3, 5] and [2, 4]
    workers = [start_python(CAT_WORKER, repo, ",".join(map(str, s)), extra_env=SINGLE_THREAD_ENV) for s in shares]
    results = {}
    try:
        for proc in workers:
            results.update({int(k): v for k, v in json.loads(finish(proc)).items()})
    finally:
        for proc in workers:  # never leave a worker running after a failure
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert sorted(results) == CAT_SEEDS
    train = {s: r["train"] for s, r in results.items()}
    test = {s: r["test"] for s, r in results.items()}
    mean_test = float(np.mean(list(test.values())))
    summary = f"train accuracy {train}, test accuracy {test}, mean test {mean_test:.3f}"
    assert min(train.values()) >= 0.95, summary
    assert mean_test >= 0.74, summary


@pytest.mark.parametrize(
    "required, outcome", [(None, pytest.skip.Exception), ("0", pytest.skip.Exception), ("1", pytest.fail.Exception)]
)
def test_missing_cat_data_skips_locally_and_fails_in_ci(required, outcome, tmp_path, monkeypatch):
    monkeypatch.setattr(core, "CAT_DIR", tmp_path)  # an empty folder
    if required is None:
        monkeypatch.delenv("NUMPYNET_REQUIRE_CAT_DATA", raising=False)
    else:
        monkeypatch.setenv("NUMPYNET_REQUIRE_CAT_DATA", required)
    with pytest.raises(
        outcome, match=r"cat / non-cat data not found in .*missing train_catvnoncat.h5, test_catvnoncat.h5"
    ):
        require_cat_data()
    (tmp_path / "train_catvnoncat.h5").touch()
    (tmp_path / "test_catvnoncat.h5").touch()
    assert require_cat_data() == tmp_path
