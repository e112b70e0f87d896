"""One optimizer step against a hand-derived update with known state.

Expected values are written out as numbers, worked by hand (and with
``decimal`` at 40 digits) from the textbook formulas, never computed by the
code under test:

- gd:       p <- p - lr g
- momentum: v <- b1 v + (1 - b1) g;          p <- p - lr v
- rmsprop:  s <- b2 s + (1 - b2) g^2;        p <- p - lr g / (sqrt(s) + eps)
- adam:     m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
            m_hat = m / (1 - b1^t);  s_hat = s / (1 - b2^t);
            p <- p - lr m_hat / (sqrt(s_hat) + eps)
"""

from __future__ import annotations

import numpy as np
import pytest

from numpynet import NeuralNetwork
from numpynet.optimizers import OPTIMIZERS, make_optimizer
from tests.helpers.core import binary_data, flat_params

RTOL = 1e-12


def _step(opt, params, grads, lr):
    """One step on copies (the optimizer may use grads as scratch space)."""
    params = np.array(params, dtype=np.float64)
    opt.step(params, np.array(grads, dtype=np.float64), lr)
    return params


def test_the_table_holds_exactly_the_four_optimizers():
    assert set(OPTIMIZERS) == {"gd", "momentum", "rmsprop", "adam"}


def test_gradient_descent_step():
    opt = make_optimizer("gd", 3, np.float64, 0.9, 0.999, 1e-8)
    p = _step(opt, [1.0, -2.0, 0.5], [0.5, -1.0, 0.0], lr=0.1)
    np.testing.assert_allclose(p, [0.95, -1.9, 0.5], rtol=RTOL)


def test_momentum_two_steps_from_known_velocity():
    opt = make_optimizer("momentum", 3, np.float64, 0.9, 0.999, 1e-8)
    opt.v[:] = [0.2, -0.1, 0.0]  # known state
    p = _step(opt, [1.0, -2.0, 0.5], [1.0, 0.5, -2.0], lr=0.1)
    # v = 0.9 * [0.2, -0.1, 0] + 0.1 * [1, 0.5, -2] = [0.28, -0.04, -0.2]
    np.testing.assert_allclose(opt.v, [0.28, -0.04, -0.2], rtol=RTOL)
    np.testing.assert_allclose(p, [0.972, -1.996, 0.52], rtol=RTOL)
    # second step with g = [0, 0, 1]: v = [0.252, -0.036, -0.08]
    p = _step(opt, p, [0.0, 0.0, 1.0], lr=0.1)
    np.testing.assert_allclose(opt.v, [0.252, -0.036, -0.08], rtol=RTOL)
    np.testing.assert_allclose(p, [0.9468, -1.9924, 0.528], rtol=RTOL)


def test_momentum_with_beta1_zero_is_gradient_descent():
    opt = make_optimizer("momentum", 3, np.float64, 0.0, 0.999, 1e-8)
    opt.v[:] = [5.0, 5.0, 5.0]  # forgotten entirely when beta1 = 0
    p = _step(opt, [1.0, -2.0, 0.5], [0.5, -1.0, 0.0], lr=0.1)
    np.testing.assert_allclose(p, [0.95, -1.9, 0.5], rtol=RTOL)


def test_rmsprop_step_from_known_second_moment():
    opt = make_optimizer("rmsprop", 3, np.float64, 0.9, 0.9, 1e-8)
    opt.s[:] = [0.5, 0.0, 0.04]
    p = _step(opt, [1.0, -2.0, 0.5], [1.0, -2.0, 0.0], lr=0.01)
    # s = 0.9 * [0.5, 0, 0.04] + 0.1 * [1, 4, 0] = [0.55, 0.4, 0.036]
    np.testing.assert_allclose(opt.s, [0.55, 0.4, 0.036], rtol=RTOL)
    # p = [1 - 0.01 / (sqrt(0.55) + 1e-8), -2 + 0.02 / (sqrt(0.4) + 1e-8), 0.5]
    np.testing.assert_allclose(p, [0.98651600293255334, -1.9683772238983162, 0.5], rtol=RTOL)


def test_rmsprop_adds_epsilon_to_the_root():
    opt = make_optimizer("rmsprop", 2, np.float64, 0.9, 0.0, 0.5)  # beta2 = 0: s = g^2
    p = _step(opt, [0.0, 0.0], [2.0, -1.0], lr=1.0)
    # p = -g / (|g| + 0.5) = [-2 / 2.5, 1 / 1.5]
    np.testing.assert_allclose(p, [-0.8, 2.0 / 3.0], rtol=RTOL)


def test_adam_bias_correction_at_t1_and_t2():
    opt = make_optimizer("adam", 3, np.float64, 0.9, 0.999, 1e-8)
    p0 = [1.0, -2.0, 0.5]
    # t = 1, g = [0.5, -1, 0]: m = [0.05, -0.1, 0], s = [0.00025, 0.001, 0],
    # m_hat = g, s_hat = g^2, so the step is lr * g / (|g| + 1e-8)
    p1 = _step(opt, p0, [0.5, -1.0, 0.0], lr=0.1)
    np.testing.assert_allclose(opt.m, [0.05, -0.1, 0.0], rtol=RTOL)
    np.testing.assert_allclose(opt.s, [0.00025, 0.001, 0.0], rtol=RTOL)
    np.testing.assert_allclose(p1, [0.90000000199999996, -1.900000001, 0.5], rtol=RTOL)
    # t = 2, g = [0.2, 0.4, -0.3]: m = [0.065, -0.05, -0.03],
    # s = [0.00028975, 0.001159, 0.00009], 1 - b1^2 = 0.19, 1 - b2^2 = 0.001999
    p2 = _step(opt, p1, [0.2, 0.4, -0.3], lr=0.1)
    np.testing.assert_allclose(opt.m, [0.065, -0.05, -0.03], rtol=RTOL)
    np.testing.assert_allclose(opt.s, [0.00028975, 0.001159, 0.00009], rtol=RTOL)
    np.testing.assert_allclose(p2, [0.81014248390292759, -1.8654394166626257, 0.57441367884968136], rtol=RTOL)


def test_adam_adds_epsilon_to_the_bias_corrected_root():
    """eps = 0.5 makes the placement visible: sqrt(s_hat) + eps, not sqrt(s) + eps."""
    opt = make_optimizer("adam", 3, np.float64, 0.9, 0.999, 0.5)
    p = _step(opt, [1.0, -2.0, 0.5], [0.5, -1.0, 0.0], lr=0.1)
    # step = 0.1 * g / (|g| + 0.5) = [0.05, -1/15, 0]
    np.testing.assert_allclose(p, [0.95, -2.0 + 1.0 / 15.0, 0.5], rtol=RTOL)


def test_adam_in_float32_keeps_float32_state():
    opt = make_optimizer("adam", 3, np.float32, 0.9, 0.999, 1e-8)
    params = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    opt.step(params, np.array([0.5, -1.0, 0.0], dtype=np.float32), 0.1)
    assert params.dtype == np.float32 and opt.m.dtype == np.float32 and opt.s.dtype == np.float32
    np.testing.assert_allclose(params, [0.9, -1.9, 0.5], rtol=1e-6)


# ----------------------------------------------------------------- subnormals

SUBNORMAL = {np.float64: 1e-310, np.float32: 1e-40}
STATE = {"momentum": ["v"], "rmsprop": ["s"], "adam": ["m", "s"]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(STATE))
def test_flush_subnormals_zeroes_only_subnormal_state(name, dtype):
    sub = SUBNORMAL[dtype]
    tiny = np.finfo(dtype).tiny
    opt = make_optimizer(name, 5, dtype, 0.9, 0.999, 1e-8)
    for attr in STATE[name]:
        state = getattr(opt, attr)
        state[:] = [sub, -sub, tiny, -0.5, 0.0]
        assert 0 < abs(state[0]) < tiny  # really subnormal before the flush
    opt.flush_subnormals()
    for attr in STATE[name]:
        # subnormals of either sign go, the smallest normal number stays
        np.testing.assert_array_equal(getattr(opt, attr), np.array([0, 0, tiny, -0.5, 0], dtype=dtype))


def test_fit_flushes_optimizer_state_once_per_epoch(monkeypatch):
    calls = []
    adam = OPTIMIZERS["adam"]
    original = adam.flush_subnormals

    def counting(self):
        calls.append(1)
        original(self)

    monkeypatch.setattr(adam, "flush_subnormals", counting)
    X, y = binary_data(n=40)
    NeuralNetwork([4, 5, 1], optimizer="adam", epoch=7, mini_batch_size=8).fit(X, y)
    assert len(calls) == 7


# ------------------------------------------------- which beta each one uses


def _weights(**kw):
    X, y = binary_data(n=40)
    params = dict(layer_dims=[4, 5, 1], epoch=3, mini_batch_size=8, learning_rate=0.05)
    params.update(kw)
    return flat_params(NeuralNetwork(**params).fit(X, y))


@pytest.mark.parametrize(
    "optimizer, uses",
    [
        ("gd", set()),
        ("momentum", {"beta1"}),
        ("rmsprop", {"beta2"}),
        ("adam", {"beta1", "beta2"}),
    ],
)
def test_each_optimizer_uses_the_documented_betas(optimizer, uses):
    base = _weights(optimizer=optimizer, beta1=0.9, beta2=0.999)
    for beta, other in (("beta1", 0.5), ("beta2", 0.9)):
        changed = _weights(optimizer=optimizer, **{"beta1": 0.9, "beta2": 0.999, beta: other})
        assert (not np.array_equal(base, changed)) == (beta in uses), (optimizer, beta)


# ------------------------------------- gd with the learning rate folded in


@pytest.mark.parametrize("regularization, keep_prob", [(None, 1.0), ("l2", 1.0), ("l2+dropout", 0.8)])
def test_folded_gradient_descent_equals_momentum_with_beta1_zero(regularization, keep_prob):
    """gd folds lr into backprop (no ``step`` call); momentum with beta1 = 0 is
    the same update computed the textbook way (v = g; p -= lr v), so the two
    trajectories agree to rounding, with a decaying rate, L2 and dropout."""
    kw = dict(
        regularization=regularization,
        keep_prob=keep_prob,
        lambd=0.7,
        decay="continuous",
        decay_rate=0.5,
        learning_rate=0.2,
        epoch=6,
    )
    folded = _weights(optimizer="gd", **kw)
    textbook = _weights(optimizer="momentum", beta1=0.0, **kw)
    start = _weights(optimizer="gd", **{**kw, "learning_rate": 1e-12, "epoch": 1})
    assert np.abs(folded - start).max() > 1e-2  # the weights did move
    np.testing.assert_allclose(folded, textbook, rtol=1e-10, atol=1e-12)


def test_momentum_s_default_beta1_is_the_network_s():
    assert OPTIMIZERS["momentum"](2, np.float64).beta1 == NeuralNetwork().beta1 == 0.9
