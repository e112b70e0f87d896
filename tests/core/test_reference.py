"""The network against an independent plain-numpy reference.

``grad_check`` differentiates the network's own forward pass and cost, so a
formula that is wrong but consistent with itself (another leaky-relu slope,
dropout without its 1 / keep_prob rescaling) passes it. The reference below
shares no code with ``numpynet``: activations and their derivatives are
written from the textbook formulas *in terms of the pre-activation z*
(the network works from the activated values in place), the losses from
probabilities (the network works from logits), backprop with plain
matrix products. The reference itself is checked by central differences.

The network is observed through a spy on ``Passes.backward``, called
once per mini-batch before the update: it records the batch, its dropout
masks and the weights the update starts from. Each recorded step must then
lead, by the reference's gradient step, to the weights recorded at the next
one; each epoch's ``costs_`` and ``val_costs_`` must be the reference's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from numpynet import NeuralNetwork
from numpynet.propagation import Passes

LEAKY_SLOPE = 0.01  # documented slope of leakyrelu for z < 0


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# hidden activation: (f(z), f'(z)), both from the pre-activation z
HIDDEN = {
    "relu": (lambda z: np.where(z > 0, z, 0.0), lambda z: np.where(z > 0, 1.0, 0.0)),
    "leakyrelu": (lambda z: np.where(z > 0, z, LEAKY_SLOPE * z), lambda z: np.where(z > 0, 1.0, LEAKY_SLOPE)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
}


# ------------------------------------------------------------ the reference


def ref_probabilities(logits):
    if logits.shape[1] == 1:
        return _sigmoid(logits)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_cross_entropy(P, Y):
    """Mean cross-entropy: binary for one output unit, categorical otherwise."""
    if P.shape[1] == 1:
        return float(-np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P)))
    return float(-np.mean(np.sum(Y * np.log(P), axis=1)))


def ref_forward(Ws, bs, X, activation, masks=None, keep_prob=1.0):
    """Output logits and, per layer, (input A, pre-activation Z)."""
    f = HIDDEN[activation][0]
    A, cache = X, []
    for layer, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        Z = A @ W + b
        cache.append((A, Z))
        if layer < len(Ws) - 1:
            A = f(Z)
            if masks is not None:
                A = A * masks[layer] / keep_prob
    return Z, cache


def ref_l2(Ws, lambd, n):
    return lambd / (2 * n) * sum(float(np.sum(W**2)) for W in Ws)


def ref_cost(Ws, bs, X, Y, activation, lambd=0.0, n=None, masks=None, keep_prob=1.0):
    """Mean cross-entropy + lambd / (2 n) * sum ||W||^2 (n: training examples)."""
    logits, _ = ref_forward(Ws, bs, X, activation, masks, keep_prob)
    return ref_cross_entropy(ref_probabilities(logits), Y) + ref_l2(Ws, lambd, n or len(X))


def ref_gradients(Ws, bs, X, Y, activation, lambd=0.0, n=None, masks=None, keep_prob=1.0):
    """Gradients of ``ref_cost`` with respect to every W and b, by backprop."""
    n = n or len(X)
    fprime = HIDDEN[activation][1]
    logits, cache = ref_forward(Ws, bs, X, activation, masks, keep_prob)
    dZ = (ref_probabilities(logits) - Y) / len(X)
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for layer in reversed(range(len(Ws))):
        A_in, _ = cache[layer]
        dWs[layer] = A_in.T @ dZ + lambd / n * Ws[layer]
        dbs[layer] = dZ.sum(axis=0)
        if layer > 0:
            dA = dZ @ Ws[layer].T
            if masks is not None:
                dA = dA * masks[layer - 1] / keep_prob
            dZ = dA * fprime(cache[layer - 1][1])
    return dWs, dbs


def one_hot(y, k):
    return y.reshape(-1, 1).astype(float) if k == 1 else np.eye(k)[y]


# --------------------------------------------------------- checking the reference


def _tiny_problem(k, seed=0, n=7):
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), rng.standard_normal((3, k))]
    bs = [rng.standard_normal(4), rng.standard_normal(3), rng.standard_normal(k)]
    X = rng.standard_normal((n, 3))
    y = rng.integers(0, max(k, 2), n)
    masks = [rng.random((n, 4)) < 0.7, rng.random((n, 3)) < 0.7]
    return Ws, bs, X, one_hot(y, k), masks


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("activation", list(HIDDEN))
def test_the_reference_gradient_matches_central_differences_of_the_reference_cost(activation, k):
    """The reference checks itself, so that its agreement with the network means something."""
    Ws, bs, X, Y, masks = _tiny_problem(k)
    kw = dict(activation=activation, lambd=0.4, n=11, masks=masks, keep_prob=0.7)
    dWs, dbs = ref_gradients(Ws, bs, X, Y, **kw)
    eps = 1e-6
    for params, grads in [(Ws, dWs), (bs, dbs)]:
        for P, G in zip(params, grads, strict=True):
            for i in np.ndindex(P.shape):
                saved = P[i]
                P[i] = saved + eps
                plus = ref_cost(Ws, bs, X, Y, **kw)
                P[i] = saved - eps
                minus = ref_cost(Ws, bs, X, Y, **kw)
                P[i] = saved
                assert (plus - minus) / (2 * eps) == pytest.approx(G[i], rel=1e-6, abs=1e-8)


# ------------------------------------------------------------ recording fit


class Recorder:
    """Spy on ``Passes.backward``: one record per mini-batch update.

    Each record holds the batch's rows, its dropout masks (None without
    dropout) and copies of the weights and biases the update starts from.
    """

    def __init__(self, monkeypatch):
        self.steps = []
        original = Passes.backward
        steps = self.steps

        def spy(passes, Xb, ws, mb, masks, l2_coef):
            steps.append(
                {
                    "X": np.array(Xb[:mb], dtype=np.float64),
                    "masks": None if masks is None else [np.array(m[:mb]) for m in masks],
                    "Ws": [np.array(W, dtype=np.float64) for W in passes.coefs],
                    "bs": [np.array(b, dtype=np.float64) for b in passes.intercepts],
                }
            )
            return original(passes, Xb, ws, mb, masks, l2_coef)

        monkeypatch.setattr(Passes, "backward", spy)

    @staticmethod
    def rows(X, step):
        """Indices into X (rows distinct, in the network's dtype) of a step's batch."""
        hits = [np.flatnonzero((X == row).all(axis=1)) for row in step["X"]]
        assert all(len(h) == 1 for h in hits)
        return [int(h[0]) for h in hits]


def _data(k, n=14, n_val=9, n_features=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_val, n_features))
    y = np.arange(n + n_val) % max(k, 2)  # every class present in both sets
    rng.shuffle(y)
    X[np.arange(len(y)), y % n_features] += 1.0  # learnable, not separable
    return X[:n], y[:n], X[n:], y[n:]


REGULARIZATIONS = [None, "l2", "dropout", "l2+dropout"]
OUTPUTS = {"sigmoid": 1, "softmax": 3}
DTYPES = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}
LAMBD, KEEP, LR, EPOCHS, BATCH = 0.6, 0.6, 0.3, 3, 5


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("regularization", REGULARIZATIONS)
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", list(HIDDEN))
def test_every_update_cost_and_prediction_match_the_reference(activation, output, regularization, dtype, monkeypatch):
    k = OUTPUTS[output]
    X, y, Xv, yv = _data(k)
    n = len(X)
    Y, Yv = one_hot(y, k), one_hot(yv, k)
    record = Recorder(monkeypatch)
    net = NeuralNetwork(
        [3, 5, 4, k],
        activation_function=activation,
        regularization=regularization,
        lambd=LAMBD,
        keep_prob=KEEP,
        learning_rate=LR,
        epoch=EPOCHS,
        mini_batch_size=BATCH,
        optimizer="gd",
        dtype=dtype,
        seed=4,
    ).fit(X, y, X_val=Xv, y_val=yv)
    tol = DTYPES[dtype]
    l2 = "l2" in (regularization or "")
    dropout = "dropout" in (regularization or "")
    lambd = LAMBD if l2 else 0.0
    per_epoch = math.ceil(n / BATCH)
    steps = record.steps
    assert len(steps) == EPOCHS * per_epoch

    final = {
        "Ws": [np.array(W, dtype=np.float64) for W in net.coefs_],
        "bs": [np.array(b, dtype=np.float64) for b in net.intercepts_],
    }
    epoch_cost, epoch_correct = [0.0] * EPOCHS, [0] * EPOCHS
    for i, step in enumerate(steps):
        rows = record.rows(X.astype(dtype).astype(np.float64), step)
        masks = step["masks"]
        assert (masks is not None) == dropout
        kw = dict(activation=activation, lambd=lambd, n=n, masks=masks, keep_prob=KEEP)
        Xb = step["X"]
        # the cost this batch adds to its epoch: its size times (mean cross-entropy + L2)
        epoch_cost[i // per_epoch] += len(rows) * ref_cost(step["Ws"], step["bs"], Xb, Y[rows], **kw) / n
        # train accuracy: the predictions of that same forward pass (dropout on)
        logits, _ = ref_forward(step["Ws"], step["bs"], Xb, activation, masks, KEEP)
        guess = (logits[:, 0] > 0).astype(int) if k == 1 else logits.argmax(axis=1)
        epoch_correct[i // per_epoch] += int(np.sum(guess == y[rows]))
        # one gradient step leads to the weights of the next record
        dWs, dbs = ref_gradients(step["Ws"], step["bs"], Xb, Y[rows], **kw)
        after = steps[i + 1] if i + 1 < len(steps) else final
        for W, dW, W_next in zip(step["Ws"], dWs, after["Ws"], strict=True):
            np.testing.assert_allclose(W_next, W - LR * dW, **tol)
        for b, db, b_next in zip(step["bs"], dbs, after["bs"], strict=True):
            np.testing.assert_allclose(b_next, b - LR * db, **tol)
    np.testing.assert_allclose(net.costs_, epoch_cost, **tol)
    assert net.train_accuracies_ == [c / n for c in epoch_correct]

    # validation: at the weights each epoch ended with, L2 over the *training* size
    Xv64 = Xv.astype(dtype).astype(np.float64)
    for e in range(EPOCHS):
        end = steps[(e + 1) * per_epoch] if e + 1 < EPOCHS else final
        logits, _ = ref_forward(end["Ws"], end["bs"], Xv64, activation)
        P = ref_probabilities(logits)
        expected = ref_cross_entropy(P, Yv) + ref_l2(end["Ws"], lambd, n)
        assert net.val_costs_[e] == pytest.approx(expected, rel=tol["rtol"] * 10, abs=tol["atol"])
        predicted = (P[:, 0] > 0.5).astype(int) if k == 1 else P.argmax(axis=1)
        assert net.val_accuracies_[e] == pytest.approx(np.mean(predicted == yv))

    # prediction: no dropout, probabilities of every class
    logits, _ = ref_forward(final["Ws"], final["bs"], Xv64, activation)
    P = ref_probabilities(logits)
    full = np.hstack([1 - P, P]) if k == 1 else P
    np.testing.assert_allclose(net.predict_proba(Xv), full, **tol)


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", list(HIDDEN))
def test_negative_pre_activations_are_exercised(activation, output, monkeypatch):
    """The comparison above reaches the z < 0 side of every activation (where the
    leaky slope and the relu kink matter) and units dropped by dropout."""
    k = OUTPUTS[output]
    X, y, _, _ = _data(k)
    record = Recorder(monkeypatch)
    NeuralNetwork(
        [3, 5, 4, k],
        activation_function=activation,
        regularization="dropout",
        keep_prob=KEEP,
        learning_rate=LR,
        epoch=1,
        mini_batch_size=BATCH,
        seed=4,
    ).fit(X, y)
    step = record.steps[0]
    _, cache = ref_forward(step["Ws"], step["bs"], step["X"], activation, step["masks"], KEEP)
    hidden_Z = [cache[0][1], cache[1][1]]
    assert all((Z < 0).mean() > 0.2 for Z in hidden_Z)
    assert all(0 < m.mean() < 1 for m in step["masks"])


# ---------------------------------------------------------------- shuffling


def _epoch_orders(monkeypatch, seed, n=12, batch=5, epochs=4):
    """The order in which each epoch visits the training rows."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    y = np.arange(n) % 2
    record = Recorder(monkeypatch)
    NeuralNetwork([3, 4, 1], epoch=epochs, mini_batch_size=batch, seed=seed).fit(X, y)
    visited = [i for step in record.steps for i in Recorder.rows(X, step)]
    per_epoch = len(visited) // epochs
    assert per_epoch == n
    return [visited[e * n : (e + 1) * n] for e in range(epochs)]


def test_each_epoch_visits_every_example_once_in_a_new_order(monkeypatch):
    orders = _epoch_orders(monkeypatch, seed=3)
    for order in orders:
        assert sorted(order) == list(range(12))  # a permutation: nothing skipped or repeated
    assert len({tuple(o) for o in orders}) == len(orders), "an epoch repeated the order of another"
    assert orders[0] != list(range(12)), "the first epoch is not shuffled"


def test_the_seed_fixes_the_order_of_the_examples(monkeypatch):
    first = _epoch_orders(monkeypatch, seed=3)
    monkeypatch.undo()
    again = _epoch_orders(monkeypatch, seed=3)
    monkeypatch.undo()
    other = _epoch_orders(monkeypatch, seed=4)
    assert first == again
    assert first != other


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("keep_prob", [0.25, 0.7])
def test_dropout_keeps_keep_prob_of_the_units_in_fresh_masks(keep_prob, monkeypatch):
    """200 rows x 60 + 40 units x 4 epochs = 80 000 draws: the kept fraction is
    known to within 0.002 (one standard deviation); allow 5 of them."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    y = np.arange(200) % 2
    record = Recorder(monkeypatch)
    NeuralNetwork(
        [3, 60, 40, 1], regularization="dropout", keep_prob=keep_prob, epoch=4, mini_batch_size=200, seed=0
    ).fit(X, y)
    masks = [step["masks"] for step in record.steps]
    assert len(masks) == 4 and all(len(m) == 2 for m in masks)
    kept = np.concatenate([m.ravel() for layers in masks for m in layers])
    assert kept.size == 4 * 200 * 100
    assert abs(kept.mean() - keep_prob) < 5 * math.sqrt(keep_prob * (1 - keep_prob) / kept.size)
    # a fresh mask for every batch, and independent ones for the two layers
    assert not np.array_equal(masks[0][0], masks[1][0])
    assert not np.array_equal(masks[0][0][:, :40], masks[0][1])


def test_kept_units_are_scaled_by_one_over_keep_prob(monkeypatch):
    """With keep_prob = 0.5 a kept unit passes on twice its activation: the first
    epoch's cost (one batch, at the initial weights) is the reference's with
    A * mask / keep_prob, and measurably not the one without the rescaling."""
    X, y, _, _ = _data(1)
    record = Recorder(monkeypatch)
    net = NeuralNetwork(
        [3, 6, 5, 1], regularization="dropout", keep_prob=0.5, epoch=1, mini_batch_size=len(X), seed=2
    ).fit(X, y)
    (step,) = record.steps
    Y = one_hot(y[Recorder.rows(X, step)], 1)
    args = (step["Ws"], step["bs"], step["X"], Y, "relu")
    scaled = ref_cost(*args, masks=step["masks"], keep_prob=0.5)
    unscaled = ref_cost(*args, masks=step["masks"], keep_prob=1.0)
    assert net.costs_[0] == pytest.approx(scaled, rel=1e-12)
    assert abs(scaled - unscaled) > 1e-3
