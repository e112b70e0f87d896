"""Backprop against central differences (NeuralNetwork.grad_check), float64.

Each network is first trained for two epochs so that every bias is non-zero
and the check runs at a generic point (zero biases put relu units exactly on
their kink when a whole layer is dropped out, where no gradient exists).
"""

from __future__ import annotations

import numpy as np
import pytest

import numpynet.activations as activations
from numpynet import NeuralNetwork
from numpynet.propagation import Passes, Workspace

HIDDEN = ["relu", "leakyrelu", "tanh", "sigmoid"]
OUTPUTS = {"sigmoid-binary": 1, "softmax-3": 3}
TOL = 1e-7


def _data(n_outputs: int):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((24, 5))
    if n_outputs == 1:
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    else:
        y = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((24, 3)), axis=1)
    return X, y


def _trained(activation: str, n_outputs: int, regularization, keep_prob: float = 1.0, **kw):
    X, y = _data(n_outputs)
    net = NeuralNetwork(
        [5, 8, 6, n_outputs],
        activation_function=activation,
        regularization=regularization,
        lambd=0.7,
        keep_prob=keep_prob,
        epoch=2,
        learning_rate=0.1,
        mini_batch_size=8,
        seed=0,
        **kw,
    ).fit(X, y)
    assert all(np.any(b != 0) for b in net.intercepts_)  # a generic point, not the initial one
    return net, X, y


@pytest.mark.parametrize("regularization", [None, "l2"])
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", HIDDEN)
def test_backprop_matches_central_differences(activation, output, regularization):
    net, X, y = _trained(activation, OUTPUTS[output], regularization)
    assert net.grad_check(X, y) < TOL


@pytest.mark.parametrize("regularization", ["dropout", "l2+dropout"])
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", HIDDEN)
def test_backprop_with_a_fixed_dropout_mask(activation, output, regularization, monkeypatch):
    net, X, y = _trained(activation, OUTPUTS[output], regularization, keep_prob=0.8)

    # Record the masks grad_check draws, so that the test cannot pass with dropout
    # silently switched off: one set of masks, drawn once, some units dropped.
    drawn = []
    original = Workspace.draw_masks

    def spy(self, *args, **kwargs):
        masks = original(self, *args, **kwargs)
        drawn.append([m.copy() for m in masks])
        return masks

    monkeypatch.setattr(Workspace, "draw_masks", spy)
    assert net.grad_check(X, y) < TOL
    assert len(drawn) == 1, "the dropout masks must be drawn once and held fixed"
    assert len(drawn[0]) == 2  # one per hidden layer
    assert not all(m.all() for m in drawn[0]), "no unit was dropped: dropout is not active"


def test_grad_check_of_an_unfitted_network_initialises_it_from_seed():
    X, y = _data(1)
    net = NeuralNetwork([5, 8, 6, 1], activation_function="tanh", regularization="l2", lambd=0.5, seed=3)
    assert net.grad_check(X, y) < TOL


def test_l2_term_is_part_of_the_checked_cost():
    """With a big lambda the L2 gradient dominates: a check that ignored it would fail."""
    net, X, y = _trained("tanh", 3, "l2")
    net.set_params(lambd=50.0)
    assert net.grad_check(X, y) < TOL


@pytest.mark.parametrize("wrong", ["constant-one", "off-by-one-percent"])
def test_grad_check_detects_a_wrong_derivative(wrong, monkeypatch):
    """The check can fail: a broken activation derivative gives a large difference."""
    net, X, y = _trained("tanh", 3, None)
    assert net.grad_check(X, y) < TOL  # sanity: correct before the patch

    correct = activations.DERIVATIVES["tanh"]

    def constant_one(a, delta):  # pretends f'(z) = 1
        return None

    def off_by_one_percent(a, delta):
        correct(a, delta)
        delta *= 1.01

    patched = constant_one if wrong == "constant-one" else off_by_one_percent
    monkeypatch.setitem(activations.DERIVATIVES, "tanh", patched)
    diff = net.grad_check(X, y)
    assert diff > 1e-4, f"a wrong derivative went unnoticed (difference {diff:.2e})"


# ------------------------------------------------------------------- float32


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("regularization", [None, "l2"])
def test_float32_backprop_against_a_float64_reference(output, regularization):
    """grad_check of a float32 network is meaningful: its reference is float64.

    Central differences in float32 with eps = 1e-7 would give about 0.57 for a
    correct network; against the float64 reference a correct float32 backprop
    is within float32 rounding, and the float64 twin of the same network is
    checked at the usual tolerance.
    """
    net32, X, y = _trained("tanh", OUTPUTS[output], regularization, dtype="float32")
    assert net32.coefs_[0].dtype == np.float32
    diff32 = net32.grad_check(X, y)
    assert diff32 < 1e-5, diff32
    assert net32._theta.dtype == np.float32  # the check leaves the network in its dtype
    net64, _, _ = _trained("tanh", OUTPUTS[output], regularization)
    assert net64.grad_check(X, y) < TOL


def test_float32_grad_check_still_detects_a_wrong_derivative(monkeypatch):
    net, X, y = _trained("tanh", 3, None, dtype="float32")
    correct = activations.DERIVATIVES["tanh"]

    def off_by_one_percent(a, delta):
        correct(a, delta)
        delta *= 1.01

    monkeypatch.setitem(activations.DERIVATIVES, "tanh", off_by_one_percent)
    assert net.grad_check(X, y) > 1e-4


def test_at_the_kink_leakyrelu_takes_the_slope_of_the_negative_side():
    """z = 0 exactly (zero input, zero bias) is on the negative side, as for relu's 0."""
    delta = np.ones(3)
    activations.DERIVATIVES["leakyrelu"](np.array([0.0, -0.5, 2.0]), delta)
    np.testing.assert_array_equal(delta, [activations.LEAKY_SLOPE, activations.LEAKY_SLOPE, 1.0])
    assert activations.LEAKY_SLOPE == 0.01


# ------------------------------------------------------------ grad_check's input


def test_grad_check_checks_its_data_against_the_fitted_network():
    net, X, y = _trained("tanh", 1, None)
    cases = [
        ((X[:, :4], y), "X has 4 features (shape (24, 4)) but the network has 5 inputs"),
        ((X, y[:-1]), "y has 23 labels but X has 24 samples"),
        ((X, np.where(y == 1, 7, 0)), "y contains label(s) [7] not seen in training; known classes: [0, 1]"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as info:
            net.grad_check(*args)
        assert str(info.value) == message


def test_grad_check_of_an_unfitted_network_checks_the_data_as_fit_does():
    X, y = _data(1)
    net = NeuralNetwork([5, 8, 1], seed=3)
    for args, message in [
        ((X[:, :4], y), "X has 4 features (shape (24, 4)) but layer_dims[0] is 5"),
        ((X, y[:-1]), "y has 23 labels but X has 24 samples"),
    ]:
        with pytest.raises(ValueError) as info:
            net.grad_check(*args)
        assert str(info.value) == message


def test_grad_check_of_an_unfitted_float32_network_initialises_it_in_float32():
    X, y = _data(3)
    net = NeuralNetwork([5, 4, 3], dtype="float32", seed=1)
    assert net.grad_check(X, y) < 1e-5
    assert net.coefs_[0].dtype == np.float32 and net._theta.dtype == np.float32
    assert list(net.classes_) == [0, 1, 2] and net.layer_dims_ == [5, 4, 3]


def test_grad_check_of_an_unfitted_network_with_inferred_sizes_and_its_seed():
    X, y = _data(3)
    first = NeuralNetwork(hidden_layer_sizes=(4,), seed=5)
    assert first.grad_check(X, y) < TOL
    assert first.layer_dims_ == [5, 4, 3]
    again = NeuralNetwork(hidden_layer_sizes=(4,), seed=5)
    again.grad_check(X, y)
    np.testing.assert_array_equal(again.coefs_[0], first.coefs_[0])  # initialised from seed, not at random


def test_grad_check_draws_its_dropout_masks_from_seed():
    net, X, y = _trained("relu", 3, "dropout", keep_prob=0.6)
    assert net.grad_check(X, y) == net.grad_check(X, y)


def test_grad_check_notices_a_wrong_l2_term_in_the_cost(monkeypatch):
    """The L2 term is part of the checked cost: a cost whose L2 term disagrees with
    the L2 gradient (here doubled) makes the check fail."""
    net, X, y = _trained("tanh", 3, "l2")
    correct = Passes.l2_cost
    monkeypatch.setattr(Passes, "l2_cost", lambda self, lambd, m: 2 * correct(self, lambd, m))
    assert net.grad_check(X, y) > 1e-4


@pytest.mark.parametrize("hidden", [(), (3,)])
def test_grad_check_where_both_gradients_vanish_exactly_is_zero(hidden):
    """All weights zero and two identical-but-for-the-label examples: backprop
    and central differences are both exactly 0, and so is the figure (not 0 / 0)."""
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([0, 1])
    net = NeuralNetwork(hidden_layer_sizes=hidden, epoch=1).fit(X, y)
    for w in net.coefs_ + net.intercepts_:
        w[...] = 0.0
    assert net.grad_check(X, y) == 0.0


# ------------------------------------------------- the checked network is only read


def _state(net) -> dict:
    """Every attribute of the network, arrays copied."""
    return {
        k: (np.array(v, copy=True), v.dtype)
        if isinstance(v, np.ndarray)
        else [np.array(a, copy=True) for a in v]
        if k in ("coefs_", "intercepts_")
        else v
        for k, v in vars(net).items()
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_grad_check_leaves_a_fitted_network_as_it_found_it(dtype):
    """Parameters, gradient buffer and every other attribute are untouched: the check
    computes backprop into a gradient of its own and perturbs a copy."""
    net, X, y = _trained("tanh", 3, "l2+dropout", keep_prob=0.8, dtype=dtype)
    before, theta, coefs = _state(net), net._theta, net.coefs_
    assert net.grad_check(X, y) < (TOL if dtype == "float64" else 1e-5)
    after = _state(net)
    assert after.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, tuple):
            np.testing.assert_array_equal(after[key][0], value[0], strict=True, err_msg=key)
        elif key in ("coefs_", "intercepts_"):
            for a, b in zip(after[key], value, strict=True):
                np.testing.assert_array_equal(a, b, strict=True, err_msg=key)
        else:
            assert after[key] == value, key
    assert net._theta is theta and net.coefs_ is coefs and np.shares_memory(net.coefs_[0], net._theta)


def test_the_network_keeps_its_own_parameters_while_the_check_runs(monkeypatch):
    """Whoever reads the network during the check (another thread predicting, a callback)
    sees its own float32 parameters at every cost evaluation, the float64 reference's included."""
    from numpynet.losses import SoftmaxCategorical

    net, X, y = _trained("tanh", 3, "l2", dtype="float32")
    theta, seen = net._theta, []
    original = SoftmaxCategorical.loss_and_probs

    def spy(z, Y):
        seen.append((z.dtype, net._theta is theta, net.coefs_[0].dtype))
        return original(z, Y)

    monkeypatch.setattr(SoftmaxCategorical, "loss_and_probs", staticmethod(spy))
    net.grad_check(X, y)
    assert len(seen) == 1 + 2 * theta.size  # backprop's, then two per parameter
    assert seen[0][0] == np.float32 and {s[0] for s in seen[1:]} == {np.dtype(np.float64)}
    assert {s[1:] for s in seen} == {(True, np.dtype(np.float32))}
