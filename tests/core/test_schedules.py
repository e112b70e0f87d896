"""Learning-rate decay: computed from the initial rate at every epoch.

continuous: lr0 / (1 + decay_rate * epoch)
discrete:   lr0 / (1 + decay_rate * floor(epoch / decay_interval))

The original compounded the decay on the already-decayed rate (continuous
would give lr0 / (1 * 2 * 3 * ...) with decay_rate 1); the expected values
below rule that out.
"""

from __future__ import annotations

import numpy as np
import pytest

import numpynet.optimizers as optimizers
from numpynet import NeuralNetwork
from numpynet.schedules import make_schedule
from tests.helpers.core import binary_data


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (0, 0.1),
        (1, 0.1 / 1.5),
        (2, 0.05),
        (4, 0.1 / 3),
        (10, 0.1 / 6),
        (999, 0.1 / 500.5),
    ],
)
def test_continuous_decay_at_given_epochs(epoch, expected):
    schedule = make_schedule("continuous", 0.1, 0.5, 1000)
    assert schedule(epoch) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (0, 0.2),
        (1, 0.2),
        (999, 0.2),
        (1000, 0.1),
        (1999, 0.1),
        (2000, 0.2 / 3),
        (3500, 0.05),
    ],
)
def test_discrete_decay_at_given_epochs(epoch, expected):
    schedule = make_schedule("discrete", 0.2, 1.0, 1000)
    assert schedule(epoch) == pytest.approx(expected, rel=1e-14)


def test_discrete_decay_honours_the_interval():
    schedule = make_schedule("discrete", 1.0, 2.0, 3)
    assert [schedule(e) for e in range(8)] == pytest.approx([1, 1, 1, 1 / 3, 1 / 3, 1 / 3, 1 / 5, 1 / 5])


def test_no_decay_is_constant():
    schedule = make_schedule(None, 0.03, 5.0, 10)
    assert [schedule(e) for e in (0, 1, 10, 10_000)] == [0.03] * 4


@pytest.mark.parametrize("decay", ["continuous", "discrete"])
def test_a_schedule_does_not_compound_when_asked_again(decay):
    schedule = make_schedule(decay, 0.1, 1.0, 2)
    first = [schedule(e) for e in range(10)]
    again = [schedule(e) for e in reversed(range(10))][::-1]
    assert first == again
    assert schedule(5) == schedule(5)


# --------------------------------------------------------------- through fit


def _fit(callback=None, **kw):
    X, y = binary_data(n=40)
    params = dict(layer_dims=[4, 3, 1], learning_rate=0.1, mini_batch_size=16)
    params.update(kw)
    return NeuralNetwork(**params).fit(X, y, callback=callback)


def test_fit_records_continuous_decay_per_epoch():
    net = _fit(decay="continuous", decay_rate=1.0, epoch=6)
    assert net.learning_rates_ == pytest.approx([0.1 / (1 + e) for e in range(6)], rel=1e-14)


def test_fit_records_discrete_decay_per_epoch():
    net = _fit(decay="discrete", decay_rate=0.5, decay_interval=2, epoch=7)
    assert net.learning_rates_ == pytest.approx([0.1, 0.1, 0.1 / 1.5, 0.1 / 1.5, 0.05, 0.05, 0.1 / 2.5], rel=1e-14)


def test_fit_without_decay_keeps_the_rate_whatever_decay_rate_says():
    net = _fit(decay=None, decay_rate=3.0, epoch=4)
    assert net.learning_rates_ == [0.1] * 4


def test_the_default_discrete_interval_is_the_originals_1000():
    assert NeuralNetwork([4, 1]).decay_interval == 1000


@pytest.mark.parametrize("optimizer, cls", [("momentum", "Momentum"), ("adam", "Adam")])
def test_the_optimizer_steps_with_the_scheduled_rate(monkeypatch, optimizer, cls):
    """learning_rates_ is not just bookkeeping: every update uses that epoch's rate.

    (Plain gd folds the rate into backprop instead of calling ``step``; that
    path is checked against momentum with beta1 = 0 in core/test_optimizers.py.)
    """
    seen = []
    original = getattr(optimizers, cls).step

    def recording(self, params, grads, lr):
        seen.append(lr)
        original(self, params, grads, lr)

    monkeypatch.setattr(getattr(optimizers, cls), "step", recording)
    metrics = []
    net = _fit(
        decay="continuous",
        decay_rate=1.0,
        epoch=3,
        optimizer=optimizer,
        callback=lambda epoch, m: metrics.append(m["learning_rate"]),
    )
    batches = 3  # 40 examples in batches of 16
    assert seen == pytest.approx([0.1 / (1 + e) for e in range(3) for _ in range(batches)], rel=1e-14)
    assert metrics == net.learning_rates_
    assert np.isfinite(net.costs_).all()
