"""Bad input raises ValueError naming the parameter, the value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

from numpynet import NeuralNetwork
from tests.helpers.core import binary_data, flat_params, multiclass_data

X, Y = binary_data(n=30)
BASE = dict(layer_dims=[4, 3, 1], epoch=2)


def _fit(X=X, y=Y, **kw):
    params = {**BASE, **kw}
    return NeuralNetwork(**params).fit(X, y)


# (hyperparameters, parameter named in the message, value shown in the message)
BAD_HYPERPARAMETERS = [
    (dict(learning_rate=0), "learning_rate", "0"),
    (dict(learning_rate=-0.01), "learning_rate", "-0.01"),
    (dict(learning_rate=float("nan")), "learning_rate", "nan"),
    (dict(keep_prob=0), "keep_prob", "0"),
    (dict(keep_prob=-0.2), "keep_prob", "-0.2"),
    (dict(keep_prob=1.5), "keep_prob", "1.5"),
    (dict(lambd=-0.1), "lambd", "-0.1"),
    (dict(mini_batch_size=0), "mini_batch_size", "0"),
    (dict(mini_batch_size=-4), "mini_batch_size", "-4"),
    (dict(mini_batch_size=2.5), "mini_batch_size", "2.5"),
    (dict(epoch=0), "epoch", "0"),
    (dict(epoch=-3), "epoch", "-3"),
    (dict(beta1=1.0), "beta1", "1.0"),
    (dict(beta1=-0.1), "beta1", "-0.1"),
    (dict(beta2=1.0), "beta2", "1.0"),
    (dict(beta2=1.5), "beta2", "1.5"),
    (dict(beta2=-1e-3), "beta2", "-0.001"),
    (dict(layer_dims=[4]), "layer_dims", "[4]"),
    (dict(layer_dims=[]), "layer_dims", "[]"),
    (dict(layer_dims=[4, 0, 1]), "layer_dims", "0"),
    (dict(layer_dims=[4, -3, 1]), "layer_dims", "-3"),
    (dict(decay_rate=-1.0), "decay_rate", "-1.0"),
    (dict(decay_interval=0), "decay_interval", "0"),
    (dict(epsilon=0.0), "epsilon", "0.0"),
]


@pytest.mark.parametrize("kw, name, shown", BAD_HYPERPARAMETERS, ids=lambda v: repr(v))
def test_bad_hyperparameter_names_parameter_and_value(kw, name, shown):
    with pytest.raises(ValueError) as info:
        _fit(**kw)
    message = str(info.value)
    assert name in message
    assert shown in message


@pytest.mark.parametrize(
    "name, value, valid",
    [
        ("activation_function", "softplus", ["relu", "tanh", "sigmoid", "leakyrelu"]),
        ("optimizer", "sgd", ["gd", "momentum", "rmsprop", "adam"]),
        ("decay", "exponential", ["continuous", "discrete"]),
        ("regularization", "l1", ["l2", "dropout", "l2+dropout"]),
    ],
)
def test_unknown_name_lists_the_valid_ones(name, value, valid):
    with pytest.raises(ValueError) as info:
        _fit(**{name: value})
    message = str(info.value)
    assert name in message and value in message
    for choice in valid:
        assert repr(choice) in message or choice in message, (choice, message)


@pytest.mark.parametrize("spelling", ["L2_regularization", "l2_regularizer", "l2", "L2"])
def test_original_regularization_spellings_mean_l2(spelling):
    l2 = flat_params(_fit(regularization="l2", lambd=5.0, epoch=5))
    alias = flat_params(_fit(regularization=spelling, lambd=5.0, epoch=5))
    none = flat_params(_fit(regularization=None, lambd=5.0, epoch=5))
    np.testing.assert_array_equal(alias, l2)
    assert not np.array_equal(alias, none)  # the alias is not silently ignored


def test_dropout_spellings_are_accepted():
    both = flat_params(_fit(regularization="l2+dropout", keep_prob=0.7, epoch=3))
    plain = flat_params(_fit(regularization=None, keep_prob=0.7, epoch=3))
    assert not np.array_equal(both, plain)
    _fit(regularization="dropout", keep_prob=0.7)


# ------------------------------------------------------------------- data


def _with(value, at=(3, 1)):
    bad = X.copy()
    bad[at] = value
    return bad


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X_is_rejected(value):
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite"):
        _fit(X=_with(value))


def test_non_finite_validation_data_is_named_X_val():
    with pytest.raises(ValueError, match=r"X_val contains .*NaN"):
        NeuralNetwork(**BASE).fit(X, Y, X_val=_with(np.nan), y_val=Y)


def test_non_finite_X_at_prediction_is_rejected():
    net = _fit()
    with pytest.raises(ValueError, match="NaN"):
        net.predict(_with(np.inf))


def test_empty_X_is_rejected():
    with pytest.raises(ValueError, match=r"X is empty.*\(0, 4\)"):
        _fit(X=np.empty((0, 4)), y=np.empty(0))


def test_mismatched_X_and_y_lengths():
    with pytest.raises(ValueError) as info:
        _fit(y=Y[:-1])
    message = str(info.value)
    assert "y" in message and "29" in message and "30" in message


def test_mismatched_validation_lengths_name_X_val():
    """The message must name the validation arrays, not the training X."""
    with pytest.raises(ValueError, match=r"y_val has 9 labels but X_val has 10"):
        NeuralNetwork(**BASE).fit(X, Y, X_val=X[:10], y_val=Y[:9])


@pytest.mark.parametrize(
    "labels, layer_dims, needle",
    [
        (np.arange(30) % 3, [4, 3, 1], r"3 distinct label.*layer_dims\[-1\] is 1"),
        (np.zeros(30, dtype=int), [4, 3, 1], r"1 distinct label.*layer_dims\[-1\] is 1"),
        (Y, [4, 3, 3], r"2 distinct label.*layer_dims\[-1\] is 3"),
        (np.arange(30) % 4, [4, 3, 3], r"4 distinct label.*layer_dims\[-1\] is 3"),
    ],
)
def test_labels_that_do_not_fit_the_output_layer(labels, layer_dims, needle):
    with pytest.raises(ValueError, match=needle):
        _fit(y=labels, layer_dims=layer_dims)


def test_labels_unseen_in_training_are_rejected_at_evaluation():
    Xm, ym = multiclass_data(n=30)
    net = _fit(X=Xm, y=ym, layer_dims=[4, 3, 3])
    with pytest.raises(ValueError, match=r"\[7\].*not seen in training"):
        net.evaluate(Xm, np.where(np.arange(30) == 0, 7, ym))
    with pytest.raises(ValueError, match="not seen in training"):
        NeuralNetwork(**{**BASE, "layer_dims": [4, 3, 3]}).fit(Xm, ym, X_val=Xm, y_val=ym + 1)


def test_features_first_data_says_to_pass_the_transpose():
    with pytest.raises(ValueError) as info:
        _fit(X=X.T)
    message = str(info.value)
    assert "features-first" in message and "X.T" in message and "(4, 30)" in message


def test_features_first_at_prediction_says_to_pass_the_transpose():
    net = _fit()
    with pytest.raises(ValueError, match=r"X\.T"):
        net.predict(X.T)


def test_wrong_feature_count_names_both_sizes():
    with pytest.raises(ValueError, match=r"X has 5 features.*layer_dims\[0\] is 4"):
        _fit(X=np.ones((30, 5)))


def test_one_dimensional_X_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        _fit(X=X[:, 0])


def test_non_numeric_X_is_rejected():
    with pytest.raises(ValueError, match="numeric"):
        _fit(X=np.full((30, 4), "a"))


def test_validation_data_must_come_in_pairs():
    with pytest.raises(ValueError, match="^X_val and y_val must be given together$"):
        NeuralNetwork(**BASE).fit(X, Y, X_val=X)
    with pytest.raises(ValueError, match="^X_val and y_val must be given together$"):
        NeuralNetwork(**BASE).fit(X, Y, y_val=Y)


def test_set_params_rejects_unknown_names():
    with pytest.raises(ValueError, match="learningrate"):
        NeuralNetwork(**BASE).set_params(learningrate=0.1)


def test_a_failed_validation_leaves_an_unfitted_estimator_unfitted():
    net = NeuralNetwork(**{**BASE, "learning_rate": -1.0})
    with pytest.raises(ValueError):
        net.fit(X, Y)
    with pytest.raises(RuntimeError, match="not fitted"):
        net.predict(X)


def test_mixed_type_labels_are_a_value_error():
    """Bad input is a ValueError (as in scikit-learn), not a TypeError from sorting."""
    with pytest.raises(ValueError, match="y"):
        _fit(y=np.array([1, "a"] * 15, dtype=object))


# ------------------------------------------- the remaining hyperparameter checks

# (hyperparameters, the whole message): the parameter, the value and what is allowed
BAD_SETTINGS_MESSAGES = [
    (dict(seed=-1), "seed=-1 is invalid: must be an integer >= 0"),
    (dict(seed=1.5), "seed=1.5 is invalid: must be an integer >= 0"),
    (dict(seed=True), "seed=True is invalid: must be an integer >= 0"),
    (dict(seed="0"), "seed='0' is invalid: must be an integer >= 0"),
    (dict(dtype="float16"), "dtype='float16' is invalid: must be one of 'float64', 'float32'"),
    (dict(dtype=np.float32), "dtype=<class 'numpy.float32'> is invalid: must be one of 'float64', 'float32'"),
    (dict(initialization="glorot"), "initialization='glorot' is invalid: must be one of 'he', 'xavier', 'auto'"),
    (dict(epsilon=-1e-8), "epsilon=-1e-08 is invalid: must be in (0, inf]"),
    (dict(epsilon=float("nan")), "epsilon=nan is invalid: must be a finite number in (0, inf]"),
    (dict(epsilon=float("inf")), "epsilon=inf is invalid: must be a finite number in (0, inf]"),
    (dict(keep_prob=0), "keep_prob=0 is invalid: must be in (0, 1]"),
    (dict(keep_prob=1.5), "keep_prob=1.5 is invalid: must be in (0, 1]"),
    (dict(keep_prob="0.5"), "keep_prob='0.5' is invalid: must be a finite number in (0, 1]"),
    (dict(lambd=-0.1), "lambd=-0.1 is invalid: must be in [0, inf]"),
    (dict(lambd=True), "lambd=True is invalid: must be a finite number in [0, inf]"),
    (dict(beta1=1.0), "beta1=1.0 is invalid: must be in [0, 1)"),
    (dict(beta2=-0.5), "beta2=-0.5 is invalid: must be in [0, 1)"),
    (dict(learning_rate=0), "learning_rate=0 is invalid: must be in (0, inf]"),
    (dict(decay_rate=-1.0), "decay_rate=-1.0 is invalid: must be in [0, inf]"),
    (dict(epoch=0), "epoch=0 is invalid: must be an integer >= 1"),
    (dict(epoch=2.0), "epoch=2.0 is invalid: must be an integer >= 1"),
    (dict(decay_interval=0), "decay_interval=0 is invalid: must be an integer >= 1"),
    (dict(mini_batch_size=0), "mini_batch_size=0 is invalid: must be an integer >= 1"),
    (dict(n_threads=0), "n_threads=0 is invalid: must be an integer >= 1"),
    (dict(optimizer="sgd"), "optimizer='sgd' is invalid: must be one of 'gd', 'momentum', 'rmsprop', 'adam'"),
    (dict(decay="step"), "decay='step' is invalid: must be one of None, 'continuous', 'discrete'"),
    (
        dict(activation_function="elu"),
        "activation_function='elu' is invalid: must be one of 'relu', 'leakyrelu', 'tanh', 'sigmoid'",
    ),
    (
        dict(regularization="l1"),
        "regularization='l1' is invalid: must be one of None, 'l2', 'dropout', "
        "'l2+dropout', 'L2_regularization', 'l2_regularizer'",
    ),
    (
        dict(layer_dims=5),
        "layer_dims=5 is invalid: must list at least 2 sizes (input and output), e.g. [12288, 20, 7, 5, 1]",
    ),
    (
        dict(layer_dims=[4]),
        "layer_dims=[4] is invalid: must list at least 2 sizes (input and output), e.g. [12288, 20, 7, 5, 1]",
    ),
    (
        dict(layer_dims=[4, 2.0, 1]),
        "layer_dims=[4, 2.0, 1] is invalid: every size must be a positive integer (got 2.0)",
    ),
    (
        dict(layer_dims=[4, True, 1]),
        "layer_dims=[4, True, 1] is invalid: every size must be a positive integer (got True)",
    ),
    (dict(layer_dims=[4, 0, 1]), "layer_dims=[4, 0, 1] is invalid: every size must be a positive integer (got 0)"),
    (
        dict(layer_dims=None, hidden_layer_sizes=(3, 0)),
        "hidden_layer_sizes=(3, 0) is invalid: must be a positive integer or a sequence of positive integers, "
        "e.g. (20, 7, 5)",
    ),
    (
        dict(layer_dims=[4, 3, 1], hidden_layer_sizes=(5,)),
        "hidden_layer_sizes=(5,) is invalid: it disagrees with layer_dims=[4, 3, 1] (hidden sizes [3]); "
        "give one of the two",
    ),
]


@pytest.mark.parametrize("kw, message", BAD_SETTINGS_MESSAGES, ids=lambda v: repr(v))
def test_each_bad_setting_gets_its_whole_message(kw, message):
    with pytest.raises(ValueError) as info:
        _fit(**kw)
    assert str(info.value) == message


# the edges of each allowed interval, and each documented choice, are accepted
GOOD_SETTINGS = [
    dict(seed=0),
    dict(seed=np.int64(7)),
    dict(keep_prob=1.0, regularization="dropout"),
    dict(lambd=0.0),
    dict(beta1=0.0, optimizer="momentum"),
    dict(beta2=0.0, optimizer="rmsprop"),
    dict(decay_rate=0.0, decay="continuous"),
    dict(epoch=1),
    dict(mini_batch_size=1),
    dict(decay_interval=1, decay="discrete"),
    dict(n_threads=1),
    dict(epsilon=1e-300, optimizer="adam"),
    dict(dtype="float32"),
    dict(initialization="xavier"),
    dict(initialization="auto"),
    dict(regularization="DROPOUT", keep_prob=0.5),
    dict(regularization="none"),
    dict(regularization="dropout+l2", keep_prob=0.5),
    dict(layer_dims=(4, np.int32(3), 1)),
    dict(layer_dims=[4, 3, 1], hidden_layer_sizes=(3,)),
    dict(layer_dims=[4, 1]),
    dict(layer_dims=[4, 1, 1]),
    dict(layer_dims=None, hidden_layer_sizes=np.int64(2)),
]


@pytest.mark.parametrize("kw", GOOD_SETTINGS, ids=repr)
def test_settings_at_the_edge_of_what_is_allowed_train(kw):
    net = _fit(**kw)
    assert len(net.costs_) == net.n_iter_ == net.epoch
    assert np.isfinite(net.costs_).all()


def test_grad_check_checks_its_epsilon():
    with pytest.raises(ValueError, match=r"^epsilon=0 is invalid: must be in \(0, inf\]$"):
        NeuralNetwork(**BASE).grad_check(X, Y, epsilon=0)


def test_a_regularization_that_is_not_a_name_is_a_value_error():
    with pytest.raises(ValueError, match=r"^regularization=\['l2'\] is invalid"):
        _fit(regularization=["l2"])


# ------------------------------------------------------------------ labels


def test_a_column_of_labels_trains_like_a_flat_vector():
    """y of shape (n, 1) (a column, as the original's (1, m) transposed) is y.ravel()."""
    flat = _fit(y=Y)
    for column in (Y.reshape(-1, 1), Y.reshape(1, -1)):
        np.testing.assert_array_equal(flat_params(_fit(y=column)), flat_params(flat))
    with_val = NeuralNetwork(**BASE).fit(X, Y, X_val=X[:10], y_val=Y[:10].reshape(-1, 1))
    assert with_val.val_accuracies_ == NeuralNetwork(**BASE).fit(X, Y, X_val=X[:10], y_val=Y[:10]).val_accuracies_


@pytest.mark.parametrize("shape", [(30, 2), (2, 15), (30, 1, 1)])
def test_labels_of_another_shape_are_rejected(shape):
    y = np.resize(Y, shape)
    with pytest.raises(
        ValueError,
        match=r"^y must be 1-D \(n_samples,\), got shape " + repr(shape).replace("(", r"\(").replace(")", r"\)"),
    ):
        _fit(y=y)


def test_validation_labels_of_another_shape_are_named():
    with pytest.raises(ValueError, match=r"^y_val must be 1-D"):
        NeuralNetwork(**BASE).fit(X, Y, X_val=X[:10], y_val=np.resize(Y, (5, 2)))


def test_labels_must_be_finite():
    y = Y.astype(float)
    y[4] = np.nan
    with pytest.raises(ValueError, match=r"^y contains NaN or infinite labels$"):
        _fit(y=y)
    with pytest.raises(ValueError, match=r"^y_val contains NaN"):
        NeuralNetwork(**BASE).fit(X, Y, X_val=X, y_val=np.where(Y == 1, np.inf, 0.0))


def test_one_class_without_layer_dims_names_the_count():
    with pytest.raises(ValueError, match=r"^y has 1 class: a classifier needs at least 2 classes in y$"):
        _fit(y=np.zeros(30, dtype=int), layer_dims=None, hidden_layer_sizes=(3,))


# -------------------------------------------------------------------- data


def test_whole_messages_for_bad_data():
    cases = [
        (X[:, :0], r"^X has 0 features \(shape \(30, 0\)\); at least one feature is needed$"),
        (np.ones((30, 5)), r"^X has 5 features \(shape \(30, 5\)\) but layer_dims\[0\] is 4$"),
        (
            X.T,
            r"^X has shape \(4, 30\) but layer_dims\[0\] is 4: the data looks features-first "
            r"\(n_features, n_samples\); pass X.T$",
        ),
        (
            X[:, 0],
            r"^X must be 2-D \(n_samples, n_features\), got shape \(30,\); "
            r"flatten images with X.reshape\(len\(X\), -1\)$",
        ),
        (np.full((30, 4), "a"), r"^X must be numeric, got an array of dtype <U1$"),
        ([[1.0, 2.0], [3.0]], r"^X could not be read as a numeric array: "),
        (np.where(np.arange(120).reshape(30, 4) % 7 == 0, np.nan, X), r"^X contains 18 NaN or infinite value\(s\); "),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            _fit(X=bad)


def test_boolean_and_integer_features_are_numbers():
    ints = _fit(X=(X > 0).astype(np.int32))
    bools = _fit(X=X > 0)
    np.testing.assert_array_equal(flat_params(ints), flat_params(bools))


# ------------------------------------------- sizes, output layer and validation data


@pytest.mark.parametrize("hidden", [1, (1,), (3, 1)])
def test_a_hidden_layer_of_one_unit_is_allowed(hidden):
    net = _fit(layer_dims=None, hidden_layer_sizes=hidden)
    assert net.layer_dims_ == [4, *np.atleast_1d(hidden).tolist(), 1]


@pytest.mark.parametrize(
    "labels, layer_dims, message",
    [
        (
            np.arange(30) % 3,
            [4, 3, 1],
            "y has 3 distinct label(s) but layer_dims[-1] is 1: a single sigmoid output needs exactly 2 classes "
            "(use layer_dims[-1] = k for k classes)",
        ),
        (
            np.arange(30) % 3,
            [4, 3, 2],
            "y has 3 distinct label(s) but layer_dims[-1] is 2: a softmax output needs exactly one unit per class "
            "(use 1 unit for 2 classes if preferred)",
        ),
    ],
)
def test_an_output_layer_that_does_not_fit_the_labels_says_what_does(labels, layer_dims, message):
    with pytest.raises(ValueError) as info:
        _fit(y=labels, layer_dims=layer_dims)
    assert str(info.value) == message


def test_validation_data_of_another_width_names_X_val_and_X():
    with pytest.raises(ValueError) as info:
        NeuralNetwork(**BASE).fit(X, Y, X_val=np.ones((10, 3)), y_val=Y[:10])
    assert str(info.value) == "X_val has 3 features (shape (10, 3)) but X has 4"


def test_validation_labels_unseen_in_training_name_y_val():
    with pytest.raises(ValueError) as info:
        NeuralNetwork(**BASE).fit(X, Y, X_val=X[:10], y_val=np.where(np.arange(10) == 0, 7, Y[:10]))
    assert str(info.value).startswith("y_val contains label(s) [7] not seen in training; known classes: [0, 1]")
