"""NeuralNetwork behaviour: determinism, persistence, metrics, labels, callback,
divergence, numerical safety, dropout, dtypes, initialisation, scikit-learn
conventions and logging."""

from __future__ import annotations

import json
import logging
import math
import pickle
import warnings

import numpy as np
import pytest

from numpynet import NeuralNetwork, TrainingDiverged
from numpynet.labels import output_units
from numpynet.losses import SigmoidBinary, SoftmaxCategorical
from numpynet.propagation import Passes, Workspace
from tests.helpers.core import binary_data, flat_params, multiclass_data, run_python

# --------------------------------------------------------------- determinism

DETERMINISM_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from numpynet import NeuralNetwork

rng = np.random.default_rng(123)
X = rng.standard_normal((50, 6))
y = (X[:, 0] - X[:, 1] > 0).astype(int)
# every consumer of the seeded generator: init, shuffling, dropout masks
net = NeuralNetwork([6, 7, 5, 1], seed=int(sys.argv[1]), optimizer="adam", learning_rate=0.01,
                    regularization="l2+dropout", keep_prob=0.8, lambd=0.1, decay="continuous",
                    decay_rate=0.1, mini_batch_size=16, epoch=20).fit(X, y)
theta = np.concatenate([w.ravel() for w in net.coefs_] + [b.ravel() for b in net.intercepts_])
print(json.dumps({
    "weights": hashlib.sha256(theta.tobytes()).hexdigest(),
    "costs": hashlib.sha256(np.asarray(net.costs_, dtype=np.float64).tobytes()).hexdigest(),
    "n_costs": len(net.costs_),
}))
"""


def _run_in_child(seed: int, hashseed: str) -> dict:
    return json.loads(run_python(DETERMINISM_SCRIPT, str(seed), extra_env={"PYTHONHASHSEED": hashseed}))


def test_same_seed_gives_bit_identical_weights_and_costs_in_new_processes():
    first = _run_in_child(0, "1")
    second = _run_in_child(0, "2")
    assert first["n_costs"] == 20
    assert first == second


def test_a_different_seed_gives_different_weights():
    assert _run_in_child(0, "0")["weights"] != _run_in_child(1, "0")["weights"]
    X, y = binary_data()
    a = NeuralNetwork([4, 6, 1], seed=0, epoch=3).fit(X, y)
    b = NeuralNetwork([4, 6, 1], seed=1, epoch=3).fit(X, y)
    assert not np.allclose(flat_params(a), flat_params(b))


def test_refitting_the_same_estimator_repeats_itself():
    X, y = binary_data()
    net = NeuralNetwork([4, 6, 1], optimizer="momentum", regularization="dropout", keep_prob=0.7, epoch=4)
    first = flat_params(net.fit(X, y)), list(net.costs_)
    second = flat_params(net.fit(X, y)), list(net.costs_)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]


# ------------------------------------------------------------------- evaluate


def _flip(pred, classes, changes):
    """True labels = predictions with (from_class, to_class, count) changes."""
    y_true = pred.copy()
    for src, dst, count in changes:
        where = np.flatnonzero(pred == classes[src])[:count]
        assert len(where) == count
        y_true[where] = classes[dst]
    return y_true


def test_binary_confusion_matrix_rows_are_true_classes():
    from sklearn import metrics

    X, y = binary_data(n=80, noise=1.0)
    net = NeuralNetwork([4, 5, 1], epoch=20, learning_rate=0.05).fit(X, y)
    pred = net.predict(X)
    # 3 examples predicted positive are truly negative (false positives),
    # 1 example predicted negative is truly positive (false negative)
    y_true = _flip(pred, net.classes_, [(1, 0, 3), (0, 1, 1)])
    result = net.evaluate(X, y_true)
    cm = result["confusion_matrix"]
    n_pos_pred = int(np.sum(pred == 1))
    n_neg_pred = len(pred) - n_pos_pred
    np.testing.assert_array_equal(cm, [[n_neg_pred - 1, 3], [1, n_pos_pred - 3]])
    np.testing.assert_array_equal(cm, metrics.confusion_matrix(y_true, pred, labels=net.classes_))
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, pred), abs=1e-15)
    assert result["precision"] == pytest.approx(metrics.precision_score(y_true, pred), rel=1e-12)
    assert result["recall"] == pytest.approx(metrics.recall_score(y_true, pred), rel=1e-12)
    assert result["f1"] == pytest.approx(metrics.f1_score(y_true, pred), rel=1e-12)
    assert result["log_loss"] == pytest.approx(
        metrics.log_loss(y_true, net.predict_proba(X), labels=net.classes_), rel=1e-9
    )
    assert net.score(X, y_true) == result["accuracy"]


def test_multiclass_metrics_match_scikit_learn_macro_averages():
    from sklearn import metrics

    X, y = multiclass_data(n=120, noise=1.0)
    labels = np.array(["ant", "bee", "cow"])[y]
    net = NeuralNetwork([4, 8, 3], optimizer="adam", learning_rate=0.01, epoch=10).fit(X, labels)
    pred = net.predict(X)
    y_true = _flip(pred, net.classes_, [(0, 1, 2), (2, 0, 4), (1, 2, 1)])
    result = net.evaluate(X, y_true)
    expected_cm = metrics.confusion_matrix(y_true, pred, labels=net.classes_)
    np.testing.assert_array_equal(result["confusion_matrix"], expected_cm)
    assert expected_cm[0, 2] != expected_cm[2, 0]  # orientation is observable here
    for name, fn in [
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ]:
        assert result[name] == pytest.approx(fn(y_true, pred, average="macro"), rel=1e-12), name
    assert result["log_loss"] == pytest.approx(
        metrics.log_loss(y_true, net.predict_proba(X), labels=net.classes_), rel=1e-9
    )


# --------------------------------------------------------------------- labels


def test_binary_labels_are_relabelled_through_classes():
    """Any two labels train exactly as 0/1 with the larger label as the positive class."""
    X, y = binary_data()
    ints = NeuralNetwork([4, 5, 1], epoch=5).fit(X, y)
    for neg, pos in [("no", "yes"), (-3, 7), (0.5, 2.5), (False, True)]:
        labels = np.where(y == 1, pos, neg)
        net = NeuralNetwork([4, 5, 1], epoch=5).fit(X, labels)
        assert list(net.classes_) == [neg, pos]
        np.testing.assert_array_equal(flat_params(net), flat_params(ints))
        np.testing.assert_array_equal(net.predict(X), np.where(ints.predict(X) == 1, pos, neg))
        np.testing.assert_array_equal(net.predict_proba(X), ints.predict_proba(X))


def test_positive_class_is_the_larger_label():
    X, y = binary_data()
    labels = np.where(y == 1, "cat", "non-cat")  # 'non-cat' sorts last: it is positive
    net = NeuralNetwork([4, 5, 1], epoch=30, learning_rate=0.1).fit(X, labels)
    assert list(net.classes_) == ["cat", "non-cat"]
    proba = net.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    # column 1 is P(non-cat): high where the label is non-cat
    assert proba[labels == "non-cat", 1].mean() > 0.7 > proba[labels == "cat", 1].mean()
    assert net.score(X, labels) > 0.85


def test_multiclass_string_labels_map_in_sorted_order():
    X, y = multiclass_data()
    ints = NeuralNetwork([4, 6, 3], epoch=5).fit(X, y)
    labels = np.array(["a", "b", "c"])[y]
    net = NeuralNetwork([4, 6, 3], epoch=5).fit(X, list(labels))
    assert list(net.classes_) == ["a", "b", "c"]
    np.testing.assert_array_equal(flat_params(net), flat_params(ints))
    np.testing.assert_array_equal(net.predict(X), np.array(["a", "b", "c"])[ints.predict(X)])


def test_two_classes_through_a_softmax_output():
    X, y = binary_data()
    net = NeuralNetwork([4, 5, 2], epoch=30, learning_rate=0.1).fit(X, y)
    assert net.predict_proba(X).shape == (len(X), 2)
    assert net.score(X, y) > 0.85


# ------------------------------------------------------------------- callback


def test_callback_receives_the_metrics_every_epoch():
    X, y = binary_data()
    Xv, yv = binary_data(n=20, seed=1)
    seen = []
    net = NeuralNetwork([4, 5, 1], epoch=4).fit(
        X, y, X_val=Xv, y_val=yv, callback=lambda epoch, metrics: seen.append((epoch, dict(metrics)))
    )
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    for epoch, metrics in seen:
        assert {"train_cost", "train_accuracy", "learning_rate", "val_cost", "val_accuracy"} <= set(metrics)
        assert metrics["train_cost"] == net.costs_[epoch]
        assert metrics["learning_rate"] == net.learning_rates_[epoch]
        assert metrics["val_cost"] == net.val_costs_[epoch]
        assert metrics["val_accuracy"] == net.val_accuracies_[epoch]
        assert 0.0 <= metrics["train_accuracy"] <= 1.0
    # the last validation figures are those of the final model
    assert net.val_accuracies_[-1] == net.score(Xv, yv)
    assert net.val_costs_[-1] == pytest.approx(net.evaluate(Xv, yv)["log_loss"], rel=1e-12)


def test_callback_without_validation_gets_the_training_keys():
    X, y = binary_data()
    keys = []
    NeuralNetwork([4, 5, 1], epoch=2).fit(X, y, callback=lambda e, m: keys.append(set(m)))
    assert keys == [{"train_cost", "train_accuracy", "learning_rate"}] * 2


class _Stop(Exception):
    pass


def test_an_exception_in_the_callback_stops_fit_and_keeps_history():
    X, y = binary_data()
    calls = []

    def prune(epoch, metrics):
        calls.append(epoch)
        if epoch == 2:
            raise _Stop(epoch)

    net = NeuralNetwork([4, 5, 1], epoch=50)
    with pytest.raises(_Stop):
        net.fit(X, y, callback=prune)
    assert calls == [0, 1, 2]
    assert len(net.costs_) == len(net.learning_rates_) == 3
    assert all(math.isfinite(c) for c in net.costs_)
    assert net.predict(X).shape == (len(X),)  # the weights reached so far are usable


# ----------------------------------------------------------------- divergence


def test_a_huge_learning_rate_raises_training_diverged():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)) * 10
    y = (X[:, 0] > 0).astype(int)
    net = NeuralNetwork([5, 8, 1], learning_rate=100.0, epoch=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # diverging must not spray RuntimeWarnings
        with pytest.raises(TrainingDiverged) as info:
            net.fit(X, y)
    exc = info.value
    assert exc.epoch == len(net.costs_) >= 1  # diverged after at least one finite epoch
    assert exc.last_finite_cost == net.costs_[-1]
    assert math.isfinite(exc.last_finite_cost)
    assert f"epoch {exc.epoch}" in str(exc)
    again = pickle.loads(pickle.dumps(exc))  # crosses worker processes intact
    assert (again.epoch, again.last_finite_cost) == (exc.epoch, exc.last_finite_cost)


def test_divergence_in_the_first_epoch_has_no_last_finite_cost():
    X, y = binary_data()
    net = NeuralNetwork([4, 8, 1], learning_rate=1e300, epoch=5, mini_batch_size=4)
    with pytest.raises(TrainingDiverged) as info:
        net.fit(X * 1e3, y)
    assert info.value.epoch == 0 and info.value.last_finite_cost is None
    assert net.n_iter_ == 0 and net.costs_ == []  # no epoch completed


def test_divergence_in_the_very_last_update_is_not_returned_as_a_fitted_model():
    """The cost is measured before each update, so the final step can blow the weights
    up unseen; fit must not hand back a model whose weights are inf or NaN."""
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1], learning_rate=1e308, epoch=1, mini_batch_size=len(X))
    with pytest.raises(TrainingDiverged) as info:
        net.fit(X * 100, y)
    assert info.value.epoch == 0


# ------------------------------------------------------ numerical robustness


def test_losses_from_huge_logits_are_exact_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = np.array([[800.0], [-800.0], [1e5], [-1e5]])
        y = np.array([[1.0], [1.0], [0.0], [0.0]])
        # softplus(z) - y z: 0, 800, 1e5, 0
        assert SigmoidBinary.loss_and_probs(z, y) == pytest.approx(100800.0, rel=1e-15)
        np.testing.assert_array_equal(z.ravel(), [1.0, 0.0, 1.0, 0.0])
        z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]])
        y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        assert SoftmaxCategorical.loss_and_probs(z, y) == pytest.approx(2000.0, rel=1e-15)
        np.testing.assert_allclose(z, [[1, 0, 0], [1, 0, 0]], atol=1e-300)


@pytest.mark.parametrize("n_out", [1, 3])
def test_no_runtime_warning_for_huge_logits(n_out):
    X, y = binary_data() if n_out == 1 else multiclass_data()
    net = NeuralNetwork([4, 5, n_out], epoch=3).fit(X, y)
    net.coefs_[-1][...] *= 1e6  # logits of order 1e5 to 1e6
    net.intercepts_[-1][...] += 1e5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = net.predict_proba(X)
        result = net.evaluate(X, y)
        net.predict(X)
        net.score(X, y)
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert math.isfinite(result["log_loss"]) and result["log_loss"] > 100


def test_no_runtime_warning_when_training_on_large_inputs():
    X, y = multiclass_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = NeuralNetwork([4, 6, 3], learning_rate=1e-4, epoch=5).fit(X * 1e3, y)
    assert all(math.isfinite(c) for c in net.costs_)


def test_prediction_in_chunks_matches_prediction_row_by_row_blocks():
    """More rows than one prediction chunk (8192) go through several forward passes."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((10_000, 4))
    y = (X[:, 0] > 0).astype(int)
    net = NeuralNetwork([4, 5, 1], epoch=1).fit(X[:100], y[:100])
    whole = net.predict_proba(X)
    parts = np.vstack([net.predict_proba(X[i : i + 1000]) for i in range(0, len(X), 1000)])
    np.testing.assert_allclose(whole, parts, rtol=1e-12)


def test_prediction_in_three_chunks_covers_every_row():
    """Past two chunks (2 x 8192 rows) every row is still predicted exactly once."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((20_000, 4))
    net = NeuralNetwork([4, 5, 3], epoch=1).fit(X[:90], np.arange(90) % 3)
    whole = net.predict_proba(X)
    parts = np.vstack([net.predict_proba(X[i : i + 2500]) for i in range(0, len(X), 2500)])
    np.testing.assert_allclose(whole, parts, rtol=1e-12)


# -------------------------------------------------------------------- dropout


def _plain_forward(net, X):
    """Deterministic forward pass with relu hidden units and no dropout."""
    A = X
    for W, b in zip(net.coefs_[:-1], net.intercepts_[:-1], strict=True):
        A = np.maximum(A @ W + b, 0)
    z = A @ net.coefs_[-1] + net.intercepts_[-1]
    return 1 / (1 + np.exp(-z[:, 0]))


def test_dropout_is_off_at_prediction():
    X, y = binary_data()
    net = NeuralNetwork([4, 16, 8, 1], regularization="dropout", keep_prob=0.5, epoch=20, learning_rate=0.05).fit(X, y)
    first, second = net.predict_proba(X), net.predict_proba(X)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[:, 1], _plain_forward(net, X), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), net.predict(X))
    # and it was on during training
    plain = NeuralNetwork([4, 16, 8, 1], keep_prob=0.5, epoch=20, learning_rate=0.05).fit(X, y)
    assert not np.allclose(flat_params(net), flat_params(plain))


def test_keep_prob_one_is_no_dropout():
    X, y = binary_data()
    a = NeuralNetwork([4, 6, 1], regularization="dropout", keep_prob=1.0, epoch=4).fit(X, y)
    b = NeuralNetwork([4, 6, 1], regularization=None, epoch=4).fit(X, y)
    np.testing.assert_array_equal(flat_params(a), flat_params(b))


# --------------------------------------------------------------------- dtypes


def test_float32_trains_and_predicts_in_float32():
    X, y = multiclass_data()
    net = NeuralNetwork(
        [4, 8, 3],
        dtype="float32",
        optimizer="adam",
        learning_rate=0.01,
        regularization="l2+dropout",
        keep_prob=0.9,
        lambd=0.01,
        epoch=40,
    ).fit(X, y)
    assert all(w.dtype == np.float32 for w in net.coefs_ + net.intercepts_)
    assert net.predict_proba(X).dtype == np.float32
    assert all(math.isfinite(c) for c in net.costs_)
    assert net.score(X, y) > 0.8


def test_float32_follows_the_float64_trajectory():
    X, y = binary_data()
    kw = dict(layer_dims=[4, 6, 1], epoch=5, learning_rate=0.05, optimizer="gd")
    f64 = flat_params(NeuralNetwork(**kw).fit(X, y))
    f32 = flat_params(NeuralNetwork(dtype="float32", **kw).fit(X, y))
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------- initialisation


def _initial_weights(n_in=1000, n_hidden=500, **kw):
    """Weights straight after initialisation: one epoch with a rate too small to move them."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, n_in))
    net = NeuralNetwork([n_in, n_hidden, 1], learning_rate=1e-300, epoch=1, **kw).fit(X, [0, 1])
    return net


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"initialization": "he"},
        {"initialization": "auto"},
        {"initialization": "auto", "activation_function": "leakyrelu"},
    ],
)
def test_he_initialisation_has_std_sqrt_2_over_fan_in(kw):
    net = _initial_weights(**kw)
    W = net.coefs_[0]  # 500 000 draws: the std is known to about 0.1 %
    expected = math.sqrt(2.0 / 1000)
    assert W.std() == pytest.approx(expected, rel=0.01)
    assert abs(W.mean()) < 0.01 * expected
    assert net.coefs_[1].std() == pytest.approx(math.sqrt(2.0 / 500), rel=0.1)
    assert all(np.abs(b).max() < 1e-290 for b in net.intercepts_)  # zero, but for the 1e-300 step


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_auto_initialisation_picks_xavier_for_saturating_units(activation):
    net = _initial_weights(initialization="auto", activation_function=activation)
    assert net.coefs_[0].std() == pytest.approx(math.sqrt(2.0 / (1000 + 500)), rel=0.01)


# -------------------------------------------------------------- scikit-learn


def test_get_params_set_params_and_clone():
    from sklearn.base import clone

    X, y = binary_data()
    est = NeuralNetwork([4, 6, 1], learning_rate=0.02, optimizer="adam", epoch=3)
    assert est.get_params()["learning_rate"] == 0.02
    assert est.set_params(epoch=4) is est and est.epoch == 4
    est.fit(X, y)
    twin = clone(est)
    assert twin is not est
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "classes_") and not hasattr(twin, "costs_")
    np.testing.assert_array_equal(flat_params(twin.fit(X, y)), flat_params(est))


def test_constructor_stores_hyperparameters_only():
    est = NeuralNetwork([4, 6, 1], learning_rate=-5)  # validated at fit, as in scikit-learn
    assert [k for k in vars(est) if k.endswith("_")] == []
    assert set(vars(est)) == set(est.get_params())


def test_cross_val_score_runs_with_stratified_folds():
    from sklearn.datasets import load_iris
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X, y = load_iris(return_X_y=True)
    est = NeuralNetwork([4, 16, 3], optimizer="adam", learning_rate=0.01, epoch=60)
    scores = cross_val_score(est, X, y, cv=3)
    # a classifier gets StratifiedKFold: the same folds done by hand give the same scores
    manual = [
        NeuralNetwork(**est.get_params()).fit(X[tr], y[tr]).score(X[te], y[te])
        for tr, te in StratifiedKFold(3).split(X, y)
    ]
    np.testing.assert_array_equal(scores, manual)
    assert scores.min() > 0.8


# -------------------------------------------------------------------- logging


def test_print_cost_logs_and_prints_nothing(caplog, capsys):
    X, y = binary_data()
    with caplog.at_level(logging.INFO, logger="numpynet"):
        net = NeuralNetwork([4, 5, 1], epoch=3, print_cost=True).fit(X, y)
    records = [r for r in caplog.records if r.name.startswith("numpynet")]
    assert len(records) == 3
    assert all(r.levelno == logging.INFO for r in records)
    for epoch, (record, cost) in enumerate(zip(records, net.costs_, strict=True)):
        assert record.getMessage() == f"epoch {epoch}: cost {cost:.6f}"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_without_print_cost_nothing_is_logged(caplog, capsys):
    X, y = binary_data()
    with caplog.at_level(logging.DEBUG, logger="numpynet"):
        NeuralNetwork([4, 5, 1], epoch=3).fit(X, y)
    assert [r for r in caplog.records if r.name.startswith("numpynet")] == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ------------------------------------------------------- the cost with L2


def _independent_cost(coefs, intercepts, X, y, lambd, m):
    """Binary cross-entropy of a relu network + lambd / (2 m) * sum ||W||^2, in plain numpy."""
    A = X
    for W, b in zip(coefs[:-1], intercepts[:-1], strict=True):
        A = np.maximum(A @ W + b, 0.0)
    p = 1.0 / (1.0 + np.exp(-(A @ coefs[-1] + intercepts[-1])[:, 0]))
    cross_entropy = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return cross_entropy, lambd / (2 * m) * sum(float(np.sum(W * W)) for W in coefs)


def test_train_cost_with_l2_takes_both_terms_at_the_same_weights(monkeypatch):
    """Full-batch gd, one epoch: train_cost is cross-entropy + L2 at the starting
    weights (the forward pass the update used); val_cost is both at the final
    weights. A report that mixes the two (cross-entropy at one, L2 at the other) differs measurably here."""
    X, y = binary_data(n=40, n_features=4)
    Xv, yv = binary_data(n=30, n_features=4, seed=1)
    start = []
    original = NeuralNetwork._train

    def spy(self, *args, **kwargs):
        start.append(([W.copy() for W in self.coefs_], [b.copy() for b in self.intercepts_]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NeuralNetwork, "_train", spy)
    net = NeuralNetwork(
        [4, 6, 3, 1],
        regularization="l2",
        lambd=2.0,
        optimizer="gd",
        learning_rate=0.5,
        mini_batch_size=40,
        epoch=1,
        seed=3,
    ).fit(X, y, X_val=Xv, y_val=yv)
    ((W0, b0),) = start
    ce0, l2_0 = _independent_cost(W0, b0, X, y, 2.0, 40)
    assert net.costs_[0] == pytest.approx(ce0 + l2_0, rel=1e-12)
    ce_end_val, l2_end = _independent_cost(net.coefs_, net.intercepts_, Xv, yv, 2.0, 40)
    assert net.val_costs_[0] == pytest.approx(ce_end_val + l2_end, rel=1e-12)
    # the test can fail: the L2 term moved by more than the tolerance during the epoch
    assert abs((ce0 + l2_end) - (ce0 + l2_0)) > 1e-3


def test_train_cost_with_l2_over_mini_batches_weights_each_batch_at_its_own_start(monkeypatch):
    """Two batches: each contributes its cross-entropy and its share (m_b / m) of the
    L2 term, both at the weights its update started from."""
    X, y = binary_data(n=40, n_features=4)
    snapshots = []
    original = Passes.forward

    def spy(passes, Xb, ws, mb, masks):
        snapshots.append((Xb.copy(), [W.copy() for W in passes.coefs], [b.copy() for b in passes.intercepts]))
        return original(passes, Xb, ws, mb, masks)

    monkeypatch.setattr(Passes, "forward", spy)
    net = NeuralNetwork(
        [4, 5, 1], regularization="l2", lambd=2.0, learning_rate=0.5, mini_batch_size=25, epoch=1, seed=0
    ).fit(X, y)
    assert len(snapshots) == 2
    # the labels of each batch: find each batch's rows in X
    total = 0.0
    for Xb, Ws, bs in snapshots:
        rows = [int(np.flatnonzero((X == r).all(axis=1))[0]) for r in Xb]
        ce, l2 = _independent_cost(Ws, bs, Xb, y[rows], 2.0, 40)
        total += len(rows) * (ce + l2)
    assert net.costs_[0] == pytest.approx(total / 40, rel=1e-12)


def test_val_balanced_accuracy_each_epoch_matches_scikit_learn_on_the_epoch_s_predictions() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = np.where(X[:, 0] + 0.3 * rng.normal(size=120) > 0.8, "cat", "dog")  # imbalanced, text labels
    Xv, yv = X[:40], y[:40]
    seen = []

    def check(epoch, metrics):
        expected = balanced_accuracy_score(yv, net.predict(Xv))
        seen.append((metrics["val_balanced_accuracy"], expected))

    net = NeuralNetwork([5, 8, 1], epoch=6, learning_rate=0.05, seed=2)
    net.fit(X[40:], y[40:], Xv, yv, callback=check)
    assert len(seen) == 6
    for got, expected in seen:
        assert got == pytest.approx(expected, abs=1e-12)
    assert net.val_balanced_accuracies_ == [g for g, _ in seen]
    # a constant prediction scores 1 / classes, whatever the proportions
    from numpynet.metrics import balanced_accuracy

    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.zeros(4, dtype=int), 2) == 0.5
    assert balanced_accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), 4) == pytest.approx((1 + 1 + 0.5) / 3)


# ------------------------------------------------------- messages and repr


def test_training_diverged_says_where_and_what_to_do():
    assert str(TrainingDiverged(3, 0.125)) == (
        "training diverged at epoch 3: the cost is not finite (last finite cost: 0.125); "
        "lower learning_rate or add regularization"
    )
    first = TrainingDiverged(0, None, "weights are NaN")
    assert str(first) == (
        "training diverged at epoch 0: the cost is not finite (last finite cost: none); "
        "lower learning_rate or add regularization (weights are NaN)"
    )
    assert (first.epoch, first.last_finite_cost) == (0, None)
    assert isinstance(first, RuntimeError)


def test_repr_shows_only_the_settings_that_differ_from_the_defaults():
    assert repr(NeuralNetwork()) == "NeuralNetwork()"
    assert (
        repr(NeuralNetwork([4, 3, 1], learning_rate=0.1, hidden_layer_sizes=(100,)))
        == "NeuralNetwork(layer_dims=[4, 3, 1], learning_rate=0.1)"
    )
    # same value but another type is shown; an array never breaks the comparison
    assert (
        repr(NeuralNetwork(hidden_layer_sizes=[100], seed=np.int64(0)))
        == "NeuralNetwork(hidden_layer_sizes=[100], seed=np.int64(0))"
    )
    assert repr(NeuralNetwork(layer_dims=np.array([4, 3, 1]))) == "NeuralNetwork(layer_dims=array([4, 3, 1]))"


def test_set_params_names_the_unknown_and_the_valid_names():
    with pytest.raises(ValueError) as info:
        NeuralNetwork().set_params(epochs=3)
    names = ", ".join(NeuralNetwork().get_params())
    assert str(info.value) == f"unknown hyperparameter 'epochs'; valid names: {names}"
    assert names.startswith("layer_dims, hidden_layer_sizes, seed,") and names.endswith("initialization, n_threads")


def test_estimator_tags_say_classifier_that_needs_y():
    tags = NeuralNetwork().__sklearn_tags__()
    assert tags.estimator_type == "classifier"
    assert tags.target_tags.required is True
    assert tags.classifier_tags is not None


def test_precision_recall_and_f1_where_a_class_is_never_predicted_or_predicted_once():
    """scikit-learn's zero_division=0: a class nobody predicted has precision 0, not NaN."""
    from sklearn import metrics as sk

    from numpynet.metrics import confusion_matrix, precision_recall_f1

    y_true = np.array([0, 0, 0, 1, 1, 2, 2])
    for y_pred in (
        np.array([0, 0, 0, 0, 0, 0, 0]),  # classes 1 and 2 never predicted
        np.array([0, 0, 1, 0, 1, 2, 0]),
    ):  # class 2 predicted once
        cm = confusion_matrix(y_true, y_pred, 3)
        expected = [
            f(y_true, y_pred, average="macro", zero_division=0)
            for f in (sk.precision_score, sk.recall_score, sk.f1_score)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = precision_recall_f1(cm)
        assert got == pytest.approx(expected, abs=1e-15)
    binary = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1]), 2)
    assert precision_recall_f1(binary) == pytest.approx((1.0, 0.5, 2 / 3))
    assert precision_recall_f1(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)) == (0.0, 0.0, 0.0)


def test_evaluate_names_the_labels_in_its_messages():
    X, y = multiclass_data(n=30)
    net = NeuralNetwork([4, 3, 3], epoch=1).fit(X, y)
    for bad, message in [
        (y[:-1], "y has 29 labels but X has 30 samples"),
        (np.where(np.arange(30) == 0, 7, y), "y contains label(s) [7] not seen in training; known classes: [0, 1, 2]"),
    ]:
        for method in (net.evaluate, net.score):
            with pytest.raises(ValueError) as info:
                method(X, bad)
            assert str(info.value) == message


def test_the_output_layer_has_one_unit_for_two_classes_and_one_per_class_above():
    assert [output_units(k) for k in (2, 3, 10)] == [1, 3, 10]
    for X, y in (binary_data(n=30), multiclass_data(n=30, k=3)):
        net = NeuralNetwork(hidden_layer_sizes=(3,), epoch=1).fit(X, y)
        assert net.layer_dims_ == [4, 3, output_units(len(np.unique(y)))]
        assert net.out_activation_ == ("logistic" if len(np.unique(y)) == 2 else "softmax")


def test_label_and_feature_messages_at_prediction():
    X, y = binary_data(n=30)
    explicit = NeuralNetwork([4, 3, 1], epoch=1).fit(X, y)
    inferred = NeuralNetwork(hidden_layer_sizes=(3,), epoch=1).fit(X, y)
    cases = [
        (explicit.predict, (X[:, :3],), "X has 3 features (shape (30, 3)) but layer_dims[0] is 4"),
        (
            inferred.predict,
            (X[:, :3],),
            "X has 3 features (shape (30, 3)) but the network was fitted with 4 (n_features_in_)",
        ),
        (
            explicit.evaluate,
            (X, np.array([None] * 30, dtype=object)),
            "y labels of type object cannot be compared with classes_ [0, 1]",
        ),
        # at most the first 10 unknown labels are listed
        (
            explicit.evaluate,
            (X, np.arange(30) + 5),
            "y contains label(s) [5, 6, 7, 8, 9, 10, 11, 12, 13, 14] not seen in training; known classes: [0, 1]",
        ),
    ]
    for method, args, message in cases:
        with pytest.raises(ValueError) as info:
            method(*args)
        assert str(info.value) == message


def test_predictions_from_overflowing_logits_are_silent():
    X, y = binary_data()
    net = NeuralNetwork([4, 5, 1], epoch=1).fit(X, y)
    net.coefs_[-1][...] = 1e300  # logits overflow to +-inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = net.predict_proba(X * 1e10)
    assert np.isfinite(proba).all() and ((proba == 0) | (proba == 1)).any()


@pytest.mark.parametrize("n_out", [1, 3])
def test_a_tie_goes_to_the_first_class(n_out):
    """Logits all equal (p = 0.5 for one sigmoid unit): the first of classes_, as
    scikit-learn's linear classifiers predict the negative class at decision 0."""
    X, y = binary_data() if n_out == 1 else multiclass_data()
    labels = np.array(["b", "c", "d"])[y]
    net = NeuralNetwork([4, 3, n_out], epoch=1).fit(X, labels)
    net.coefs_[-1][...] = 0.0
    net.intercepts_[-1][...] = 0.0
    np.testing.assert_array_equal(net.predict_proba(X), np.full((len(X), max(n_out, 2)), 1 / max(n_out, 2)))
    assert set(net.predict(X)) == {"b"}


def test_the_not_fitted_message_names_the_class_and_the_remedy():
    from numpynet import NotFittedError

    with pytest.raises(NotFittedError) as info:
        NeuralNetwork().predict_proba(np.zeros((1, 4)))
    assert str(info.value) == "this NeuralNetwork is not fitted yet: call fit(X, y) or NeuralNetwork.load(path)"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_shifts_each_row_by_its_own_maximum(dtype):
    """Rows of very different scale: each row is exact, none collapses to uniform."""
    z = np.array([[1000.0, 0.0, 0.0], [-1000.0, -1000.0, -1001.0]], dtype=dtype)
    SoftmaxCategorical.probs(z)
    e = 1 / (2 + math.exp(-1))
    np.testing.assert_allclose(z[1], [e, e, e * math.exp(-1)], rtol=1e-6)
    assert z[0, 0] == 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hopeless_classes_get_a_tiny_normal_probability_never_a_subnormal_or_zero(dtype):
    """Shifted logits are clamped before exp: subnormals are slow, and a class's
    probability never becomes exactly 0 (its log stays finite)."""
    z = np.array([[0.0, -1000.0, -5000.0]], dtype=dtype)
    SoftmaxCategorical.probs(z)
    tiny = np.finfo(dtype).tiny
    assert z[0, 0] == 1.0
    assert (z[0, 1:] >= tiny).all() and (z[0, 1:] < 1e3 * tiny).all()


# ------------------------------------------- divergence found at the end of an epoch


def _with_a_huge_weight_after(net, epoch):
    """A callback that sets one first-layer weight to 1e200 after ``epoch``: the
    weight of a feature that is always 0, so the forward pass never sees it, but
    its square overflows in the L2 term."""

    def callback(e, metrics):
        if e == epoch:
            net.coefs_[0][0, 0] = 1e200

    return callback


def test_divergence_found_at_the_end_of_an_epoch_reports_the_last_completed_epoch():
    X, y = binary_data()
    X[:, 0] = 0.0
    net = NeuralNetwork([4, 5, 1], regularization="l2", lambd=0.5, epoch=10, learning_rate=0.05)
    with pytest.raises(TrainingDiverged) as info:
        net.fit(X, y, callback=_with_a_huge_weight_after(net, 2))
    assert info.value.epoch == 3 and net.n_iter_ == 3 and len(net.costs_) == 3
    assert info.value.last_finite_cost == net.costs_[-1] != net.costs_[-2]


def test_l2_with_lambd_zero_is_no_regularization_even_for_weights_too_large_to_square():
    X, y = binary_data()
    X[:, 0] = 0.0
    costs = []
    for regularization in ("l2", None):
        net = NeuralNetwork([4, 5, 1], regularization=regularization, lambd=0.0, epoch=5, learning_rate=0.05)
        net.fit(X, y, callback=_with_a_huge_weight_after(net, 1))
        costs.append(net.costs_)
    assert costs[0] == costs[1] and all(math.isfinite(c) for c in costs[0])


# ------------------------------------------------ float32 computes in float32


def _spy_on_the_arrays(monkeypatch):
    """Record every workspace, forward pass, target matrix, optimizer and
    initializer dtype the network uses."""
    import numpynet.labels as labels
    import numpynet.network as network_module

    seen = {"workspaces": [], "forwards": [], "targets": [], "optimizers": [], "init_dtypes": []}
    init_workspace, forward, targets = Workspace.__init__, Passes.forward, labels.targets
    make_optimizer = network_module.make_optimizer

    def spy_workspace(self, *args, **kwargs):
        init_workspace(self, *args, **kwargs)
        seen["workspaces"].append(self)

    def spy_forward(self, Xb, ws, mb, masks):
        Z = forward(self, Xb, ws, mb, masks)
        seen["forwards"].append((Xb.dtype, Z.dtype))
        return Z

    def spy_targets(yidx, n_out, dtype):
        Y = targets(yidx, n_out, dtype)
        seen["targets"].append(Y.dtype)
        return Y

    def spy_make_optimizer(*args):
        opt = make_optimizer(*args)
        seen["optimizers"].append(opt)
        return opt

    def spy_initializer(init):
        def wrapped(rng, fan_in, fan_out, dtype):
            seen["init_dtypes"].append(np.dtype(dtype))
            return init(rng, fan_in, fan_out, dtype)

        return wrapped

    monkeypatch.setattr(Workspace, "__init__", spy_workspace)
    monkeypatch.setattr(Passes, "forward", spy_forward)
    monkeypatch.setattr(labels, "targets", spy_targets)
    monkeypatch.setattr(network_module, "make_optimizer", spy_make_optimizer)
    for name, init in list(network_module.INITIALIZERS.items()):
        monkeypatch.setitem(network_module.INITIALIZERS, name, spy_initializer(init))
    return seen


def _workspace_dtypes(ws):
    """The dtype of every buffer of a workspace, and whether it has dropout buffers."""
    arrays = [ws.X, ws.Y, *ws.Z, *ws.dA] + ([*ws.D, *ws.R] if ws.D is not None else [])
    return {a.dtype for a in arrays}, ws.D is not None


@pytest.mark.parametrize("n_out", [1, 3])
def test_a_float32_network_computes_in_float32_throughout(n_out, monkeypatch):
    """dtype="float32" is for the parameters *and* the computation: no buffer,
    target matrix, optimizer state or input is silently kept in float64 (twice
    the memory and time, and other rounding) when the data comes in float64."""
    X, y = binary_data() if n_out == 1 else multiclass_data()
    seen = _spy_on_the_arrays(monkeypatch)
    net = NeuralNetwork(
        hidden_layer_sizes=(5, 4),
        dtype="float32",
        optimizer="adam",
        regularization="dropout",
        keep_prob=0.8,
        epoch=2,
        mini_batch_size=16,
    )
    net.fit(X, y, X_val=X[:10], y_val=y[:10])  # float64 data, converted once
    f32 = np.dtype(np.float32)
    assert net._theta.dtype == net._grad.dtype == f32
    assert seen["init_dtypes"] == [f32] * 3
    (opt,) = seen["optimizers"]
    state = [v for v in vars(opt).values() if isinstance(v, np.ndarray)]
    assert len(state) == 3 and {a.dtype for a in state} == {f32}  # adam: m, s and its scratch
    training, *validation = seen["workspaces"]
    assert _workspace_dtypes(training) == ({f32}, True) and training.M[0].dtype == bool
    net.predict_proba(X)
    net.evaluate(X, y)
    assert len(seen["workspaces"]) == 1 + 2 + 2  # one per validation epoch, predict and evaluate
    for ws in seen["workspaces"][1:]:
        assert _workspace_dtypes(ws) == ({f32}, False)  # and no dropout buffers at prediction
    assert set(seen["forwards"]) == {(f32, f32)}
    assert set(seen["targets"]) == {f32} and len(seen["targets"]) == 3  # validation, training, evaluate

    seen["forwards"].clear(), seen["targets"].clear(), seen["workspaces"].clear()
    net.grad_check(X[:6], y[:6])  # float64 data: backprop in float32, the reference in float64
    assert seen["forwards"][0] == (f32, f32) and seen["targets"] == [f32]
    assert _workspace_dtypes(seen["workspaces"][0]) == ({f32}, True)


@pytest.mark.parametrize("dropout", [True, False])
def test_a_workspace_holds_every_buffer_in_its_dtype_and_dropout_buffers_only_with_dropout(dropout):
    ws = Workspace([3, 4, 5, 2], 6, np.float32, dropout)
    assert ws.X.shape == (6, 3) and ws.Y.shape == (6, 2)
    assert [z.shape for z in ws.Z] == [(6, 4), (6, 5), (6, 2)]
    assert [a.shape for a in ws.dA] == [(6, 4), (6, 5)]
    assert _workspace_dtypes(ws) == ({np.dtype(np.float32)}, dropout)
    if dropout:
        assert [a.shape for a in ws.D] == [a.shape for a in ws.R] == [a.shape for a in ws.M] == [(6, 4), (6, 5)]
        assert {m.dtype for m in ws.M} == {np.dtype(bool)}
    else:
        assert ws.D is None and ws.R is None and ws.M is None


@pytest.mark.parametrize("name", ["he", "xavier"])
def test_initializers_return_the_dtype_asked_for(name):
    from numpynet.initializers import INITIALIZERS

    W = INITIALIZERS[name](np.random.default_rng(0), 3, 4, np.float32)
    assert W.shape == (3, 4) and W.dtype == np.float32


def test_plain_gradient_descent_folds_the_learning_rate_and_never_calls_step(monkeypatch):
    """gd's update is lr * g: backprop yields it directly (one pass less over the
    parameters per batch), so GradientDescent.step is never needed."""
    from numpynet.optimizers import GradientDescent

    def step(*args):
        raise AssertionError("GradientDescent.step called: the learning rate was not folded")

    monkeypatch.setattr(GradientDescent, "step", step)
    X, y = binary_data()
    net = NeuralNetwork([4, 5, 1], optimizer="gd", regularization="l2", epoch=2).fit(X, y)
    assert len(net.costs_) == 2


@pytest.mark.parametrize("n_out", [1, 3])
def test_underflow_is_ignored_even_when_the_caller_makes_numpy_raise_on_it(n_out):
    """Underflow is harmless here (exp of a very negative logit in the loss, products
    of tiny values in a forward pass): fit, predict_proba, predict and evaluate
    silence it themselves, whatever numpy error state the caller has set."""
    X, y = binary_data() if n_out == 1 else multiclass_data()
    with np.errstate(under="raise"):
        net = NeuralNetwork([4, 5, n_out], epoch=3).fit(X * 1e3, y)  # logits of order 1e3
        net.coefs_[0][...] *= 1e-10
        tiny = X * 1e-300  # first-layer products below the smallest normal float
        assert np.isfinite(net.predict_proba(tiny)).all()
        net.predict(tiny)
        assert math.isfinite(net.evaluate(tiny, y)["log_loss"])
