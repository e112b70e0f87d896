"""Sizes inferred at fit, and the scikit-learn adapter ``numpynet.sklearn``.

The adapter must pass scikit-learn's own conformance suite
(``check_estimator``); the core must keep accepting the original's
``layer_dims`` and the harness's seed-named hyperparameters.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest

from numpynet import NeuralNetwork, NotFittedError
from tests.helpers.core import binary_data, flat_params, multiclass_data, run_python

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError as SkNotFittedError  # noqa: E402

from numpynet.sklearn import NeuralNetworkClassifier  # noqa: E402

SMALL = dict(hidden_layer_sizes=(16,), optimizer="adam", learning_rate=0.01, epoch=50)


# ------------------------------------------------------------ the core itself


def test_default_network_is_constructible_and_infers_its_sizes():
    X, y = binary_data(n=40, n_features=5)
    net = NeuralNetwork(epoch=2).fit(X, y)
    assert net.layer_dims is None and net.hidden_layer_sizes == (100,)  # parameters untouched
    assert net.layer_dims_ == [5, 100, 1]
    assert (net.n_features_in_, net.n_layers_, net.n_outputs_, net.out_activation_) == (5, 3, 1, "logistic")
    assert [W.shape for W in net.coefs_] == [(5, 100), (100, 1)]
    assert net.n_iter_ == 2 and len(net.costs_) == 2
    np.testing.assert_array_equal(net.classes_, [0, 1])


def test_multiclass_gets_one_softmax_unit_per_class():
    X, y = multiclass_data(n=60, n_features=4, k=3)
    net = NeuralNetwork(hidden_layer_sizes=[7, 5], epoch=2).fit(X, y)
    assert net.layer_dims_ == [4, 7, 5, 3] and net.out_activation_ == "softmax"
    assert net.predict_proba(X).shape == (60, 3)


def test_an_integer_hidden_layer_size_and_no_hidden_layer():
    X, y = binary_data(n=40)
    assert NeuralNetwork(hidden_layer_sizes=6, epoch=1).fit(X, y).layer_dims_ == [4, 6, 1]
    assert NeuralNetwork(hidden_layer_sizes=(), epoch=1).fit(X, y).layer_dims_ == [4, 1]


def test_layer_dims_and_hidden_layer_sizes_give_the_same_network():
    X, y = binary_data(n=40)
    a = NeuralNetwork([4, 6, 3, 1], epoch=3, seed=5).fit(X, y)
    b = NeuralNetwork(hidden_layer_sizes=(6, 3), epoch=3, seed=5).fit(X, y)
    np.testing.assert_array_equal(flat_params(a), flat_params(b))
    assert a.costs_ == b.costs_


@pytest.mark.parametrize("value", [(0,), (4, -1), "ab", 2.5, (3.0,), True])
def test_bad_hidden_layer_sizes_name_the_parameter(value):
    X, y = binary_data(n=20)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=.*positive integer"):
        NeuralNetwork(hidden_layer_sizes=value, epoch=1).fit(X, y)


def test_hidden_layer_sizes_that_contradict_layer_dims_are_an_error():
    X, y = binary_data(n=20)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(5,\).*layer_dims=\[4, 6, 1\]"):
        NeuralNetwork([4, 6, 1], hidden_layer_sizes=(5,), epoch=1).fit(X, y)
    # agreeing with it is fine
    NeuralNetwork([4, 6, 1], hidden_layer_sizes=(6,), epoch=1).fit(X, y)


def test_one_class_is_an_error_that_says_class():
    X, _ = binary_data(n=20)
    with pytest.raises(ValueError, match="1 class"):
        NeuralNetwork(epoch=1).fit(X, np.zeros(20))


def test_prediction_checks_the_feature_count_seen_at_fit():
    X, y = binary_data(n=20)
    net = NeuralNetwork(epoch=1).fit(X, y)
    with pytest.raises(ValueError, match=r"X has 3 features.*fitted with 4"):
        net.predict(X[:, :3])


def test_not_fitted_error_is_value_attribute_and_runtime_error():
    net = NeuralNetwork()
    for kind in (ValueError, AttributeError, RuntimeError, NotFittedError):
        with pytest.raises(kind, match="not fitted"):
            net.predict(np.zeros((2, 4)))


def test_save_load_of_a_network_with_inferred_sizes(tmp_path):
    X, y = multiclass_data(n=60)
    net = NeuralNetwork(hidden_layer_sizes=(6,), epoch=3).fit(X, y)
    back = NeuralNetwork.load(net.save(tmp_path / "m"))
    assert back.layer_dims is None and back.hidden_layer_sizes == (6,)
    assert back.layer_dims_ == [4, 6, 3] and back.n_features_in_ == 4
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


@pytest.mark.parametrize("n_out", [1, 3])
def test_a_format_1_file_still_loads(tmp_path, n_out):
    """Files written before sizes were inferred keep layer_dims in the hyperparameters only.
    Every layer is re-laid out, the output layer too (a single output unit hides it)."""
    X, y = binary_data(n=40) if n_out == 1 else multiclass_data(n=40)
    net = NeuralNetwork([4, 5, n_out], epoch=3).fit(X, y)
    old = {k: v for k, v in net.get_params().items() if k not in ("hidden_layer_sizes", "n_threads")}
    path = tmp_path / "old.npz"
    # format 1 stored each weight matrix (n_in, n_out) row-major, then the biases
    theta = np.concatenate([W.ravel() for W in net.coefs_] + [b for b in net.intercepts_])
    np.savez(
        path,
        format_version=np.int64(1),
        hyperparameters=np.str_(json.dumps(old)),
        theta=theta,
        classes=net.classes_,
        costs=np.asarray(net.costs_),
    )
    back = NeuralNetwork.load(path)
    assert back.layer_dims_ == [4, 5, n_out]
    np.testing.assert_array_equal(flat_params(back), flat_params(net))
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def test_a_pickle_from_before_format_2_still_loads():
    """Old pickles: weights (n_in, n_out) in _theta, no layer_dims_ in the state."""
    import pickle

    X, y = binary_data(n=40)
    net = NeuralNetwork([4, 5, 3, 1], epoch=3).fit(X, y)
    state = net.__getstate__()
    state["_theta"] = np.concatenate([W.ravel() for W in net.coefs_] + [b for b in net.intercepts_])
    for key in ("layer_dims_", "n_layers_", "n_outputs_", "out_activation_", "hidden_layer_sizes", "n_threads"):
        state.pop(key, None)
    old = NeuralNetwork.__new__(NeuralNetwork)
    old.__setstate__(state)
    back = pickle.loads(pickle.dumps(old))
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    assert back.get_params()["hidden_layer_sizes"] == (100,) and back.layer_dims_ == [4, 5, 3, 1]


def test_the_harness_builds_and_trains_its_network_unchanged():
    """The harness's build_network (training/network_from_config.py) passes layer_dims positionally with seed-named
    kwargs."""
    from omegaconf import OmegaConf

    from numpynet.sweeps.training.network_from_config import build_network

    cfg = OmegaConf.create(
        {
            "network": {"hidden": [6, 3], "activation": "tanh", "initialization": "auto"},
            "optimizer": {"name": "adam", "learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
            "train": {
                "epoch": 3,
                "mini_batch_size": 16,
                "seed": 1,
                "regularization": "l2",
                "lambd": 0.1,
                "keep_prob": 1.0,
                "decay": None,
                "decay_rate": 1.0,
                "decay_interval": 10,
                "dtype": "float64",
                "print_cost": False,
            },
        }
    )
    X, y = multiclass_data(n=60)
    net = build_network(cfg, 4, 3)
    assert net.layer_dims == [4, 6, 3, 3] and net.activation_function == "tanh"
    assert net.fit(X, y).layer_dims_ == [4, 6, 3, 3]


# ------------------------------------------------------------- the adapter


@pytest.mark.slow
def test_import_numpynet_sklearn_is_separate_from_import_numpynet():
    out = run_python(
        "import sys, numpynet; a = 'sklearn' in sys.modules; import numpynet.sklearn; "
        "print(a, 'sklearn' in sys.modules)"
    )
    assert out.split() == ["False", "True"]


def test_check_estimator_passes_every_check():
    """scikit-learn's conformance suite: no check fails, none is excluded.

    The only skips allowed are the array-API checks that scikit-learn itself
    skips unless SCIPY_ARRAY_API=1 is set in the environment.
    """
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(NeuralNetworkClassifier(**SMALL), on_fail=None)
    status = Counter(r["status"] for r in results)
    failed = [(r["check_name"], repr(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert failed == []
    assert skipped <= {"check_array_api_input"}
    assert status["passed"] >= 54  # 54 passed + 1 skipped on scikit-learn 1.9
    assert status["passed"] + status["skipped"] == len(results)


def test_the_adapter_trains_exactly_like_the_core():
    X, y = multiclass_data(n=60)
    core = NeuralNetwork(hidden_layer_sizes=(6,), epoch=4, optimizer="adam").fit(X, y)
    adapted = NeuralNetworkClassifier(hidden_layer_sizes=(6,), epoch=4, optimizer="adam").fit(X, y)
    np.testing.assert_array_equal(flat_params(adapted), flat_params(core))
    np.testing.assert_array_equal(adapted.predict_proba(X), core.predict_proba(X))
    assert adapted.score(X, y) == core.score(X, y)


def test_the_adapter_uses_scikit_learn_errors():
    X, y = binary_data(n=30)
    est = NeuralNetworkClassifier(epoch=1)
    with pytest.raises(SkNotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, 30))
    with pytest.raises(ValueError, match="requires y to be passed"):
        est.fit(X, None)
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense data is required"):
        est.fit(scipy_sparse.csr_matrix(X), y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but NeuralNetworkClassifier is expecting 4"):
        est.predict(X[:, :3])


def test_the_adapter_in_a_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = multiclass_data(n=90)
    pipe = make_pipeline(StandardScaler(), NeuralNetworkClassifier(optimizer="adam", learning_rate=0.01, epoch=30))
    grid = GridSearchCV(pipe, {"neuralnetworkclassifier__hidden_layer_sizes": [(4,), (16,)]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.7
    assert clone(grid.best_estimator_).get_params()["neuralnetworkclassifier__hidden_layer_sizes"] in [(4,), (16,)]


def test_the_adapter_keeps_feature_names_and_round_trips_through_save(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = binary_data(n=40)
    frame = pd.DataFrame(X, columns=list("abcd"))
    est = NeuralNetworkClassifier(hidden_layer_sizes=(5,), epoch=3).fit(frame, y)
    np.testing.assert_array_equal(est.feature_names_in_, list("abcd"))
    back = NeuralNetworkClassifier.load(est.save(tmp_path / "m"))
    assert isinstance(back, NeuralNetworkClassifier)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(frame))


def test_the_adapter_evaluates_like_the_core_and_checks_its_input():
    X, y = multiclass_data(n=60)
    core = NeuralNetwork(hidden_layer_sizes=(6,), epoch=3).fit(X, y)
    adapted = NeuralNetworkClassifier(hidden_layer_sizes=(6,), epoch=3).fit(X, y)
    ours, theirs = adapted.evaluate(X, y), core.evaluate(X, y)
    np.testing.assert_array_equal(ours.pop("confusion_matrix"), theirs.pop("confusion_matrix"))
    assert ours == theirs
    with pytest.raises(ValueError, match="X has 3 features, but NeuralNetworkClassifier is expecting 4"):
        adapted.evaluate(X[:, :3], y)
    with pytest.raises(SkNotFittedError):
        NeuralNetworkClassifier().evaluate(X, y)


def test_the_adapter_s_log_probabilities_of_certain_predictions_are_silent():
    X, y = binary_data(n=40)
    est = NeuralNetworkClassifier(hidden_layer_sizes=(5,), epoch=2).fit(X, y)
    est.coefs_[-1][...] = 1e4  # probabilities exactly 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_proba = est.predict_log_proba(X)
    assert np.isneginf(log_proba).any()
    np.testing.assert_array_equal(np.exp(log_proba), est.predict_proba(X))


def test_the_adapter_tracks_validation_data_like_the_core():
    X, y = multiclass_data(n=60)
    Xv, yv = multiclass_data(n=21, seed=1)
    seen = []
    core = NeuralNetwork(hidden_layer_sizes=(6,), epoch=3).fit(X, y, Xv, yv)
    adapted = NeuralNetworkClassifier(hidden_layer_sizes=(6,), epoch=3).fit(
        X, y, X_val=Xv.tolist(), y_val=yv, callback=lambda epoch, metrics: seen.append(epoch)
    )
    assert adapted.val_costs_ == core.val_costs_ and adapted.val_accuracies_ == core.val_accuracies_
    assert seen == [0, 1, 2]
    with pytest.raises(ValueError, match="X has 3 features, but NeuralNetworkClassifier is expecting 4"):
        NeuralNetworkClassifier(epoch=1).fit(X, y, X_val=Xv[:, :3], y_val=yv)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_adapter_hands_the_core_data_already_in_the_network_s_dtype(dtype, monkeypatch):
    """scikit-learn's validate_data converts the input straight to the network's
    dtype: the core then has nothing left to convert (no second copy), for
    integer data as for float64 data and a float32 network."""
    received = []

    def spy(method):
        real = getattr(NeuralNetwork, method)

        def wrapped(self, X, *args):  # the adapter passes fit's X_val as the third argument
            received.append((method, X.dtype, args[1].dtype) if method == "fit" else (method, X.dtype))
            return real(self, X, *args)

        return wrapped

    for method in ("fit", "predict_proba", "predict", "evaluate"):
        monkeypatch.setattr(NeuralNetwork, method, spy(method))
    X, y = binary_data(n=30)
    Xi = np.round(X * 10).astype(np.int64)  # integer features
    est = NeuralNetworkClassifier(hidden_layer_sizes=(3,), epoch=1, dtype=dtype)
    est.fit(Xi, y, X_val=Xi[:10], y_val=y[:10])
    est.predict_proba(X)
    est.predict(X)
    est.evaluate(Xi, y)
    want = np.dtype(dtype)
    assert received == [("fit", want, want), ("predict_proba", want), ("predict", want), ("evaluate", want)]


def test_an_unhashable_dtype_is_the_core_s_value_error():
    X, y = binary_data(n=30)
    with pytest.raises(ValueError, match=r"^dtype=\['float32'\] is invalid: must be one of 'float64', 'float32'$"):
        NeuralNetworkClassifier(epoch=1, dtype=["float32"]).fit(X, y)
