"""The contenders of the core speed comparison: numpynet, PyTorch, scikit-learn.

Each ``*_trial(workload, dtype, seed)`` prepares data once (cast to the
dtype, outside the timed region) and returns a zero-argument callable that
trains a fresh model for ``workload.epochs`` epochs and returns
``{"seconds": training wall time, "accuracy": test accuracy}``.

The timed region is one whole ``fit``: model construction and each
library's per-fit setup (input validation, initialisation) are inside it and
amortised over the epochs; scoring the test set is outside it.

All three start from the same initial weights: numpynet's He-normal draw
for ``seed`` (biases zero), copied into the torch modules and fed to
scikit-learn through its weight-initialisation hook.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import numpy as np

from .workloads import Workload

Trial = Callable[[], dict[str, Any]]


def initial_weights(wl: Workload, seed: int, dtype) -> list[np.ndarray]:
    """The weights numpynet's ``fit`` starts from: He normal, drawn first from ``default_rng(seed)``."""
    from numpynet.initializers import INITIALIZERS

    rng = np.random.default_rng(seed)
    he = INITIALIZERS["he"]
    return [he(rng, i, o, dtype) for i, o in zip(wl.layer_dims[:-1], wl.layer_dims[1:], strict=True)]


def _cast(wl: Workload, dtype) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(wl.X_train, dtype=dtype), np.ascontiguousarray(wl.X_test, dtype=dtype))


# ---------------------------------------------------------------- numpynet
def numpynet_trial(wl: Workload, dtype, seed: int) -> Trial:
    from numpynet import NeuralNetwork

    X, Xt = _cast(wl, dtype)
    params = dict(
        layer_dims=wl.layer_dims,
        seed=seed,
        learning_rate=wl.learning_rate,
        optimizer=wl.optimizer,
        mini_batch_size=wl.batch_size,
        epoch=wl.epochs,
        dtype=np.dtype(dtype).name,
        initialization="he",
        regularization=None,
        beta1=0.9,
        beta2=0.999,
        epsilon=1e-8,
    )

    def trial() -> dict[str, Any]:
        t0 = time.perf_counter()
        net = NeuralNetwork(**params).fit(X, wl.y_train)
        seconds = time.perf_counter() - t0
        return {
            "seconds": seconds,
            "accuracy": float(net.score(Xt, wl.y_test)),
            "final_train_cost": float(net.costs_[-1]),
            "blas_threads": net.n_threads_,
        }

    return trial


# ------------------------------------------------------------------ torch
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_trial(wl: Workload, dtype, seed: int, threads: int) -> Trial:
    """A plain, idiomatic PyTorch loop: randperm, index-sliced batches, zero_grad/backward/step.

    The epoch's loss is accumulated with ``loss.item()`` as tutorials do
    (scikit-learn tracks its loss too; numpynet also counts train accuracy,
    which the torch loop is spared).
    """
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    tdtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]
    X_np, Xt_np = _cast(wl, dtype)
    X, Xt = torch.from_numpy(X_np), torch.from_numpy(Xt_np)
    binary = wl.layer_dims[-1] == 1
    if binary:
        Y = torch.from_numpy(wl.y_train.astype(dtype).reshape(-1, 1))
    else:
        Y = torch.from_numpy(wl.y_train.astype(np.int64))
    W0 = [torch.from_numpy(np.ascontiguousarray(W.T)) for W in initial_weights(wl, seed, dtype)]
    n, bs = len(X), wl.batch_size

    def build() -> nn.Sequential:
        layers: list[nn.Module] = []
        for k, (i, o) in enumerate(zip(wl.layer_dims[:-1], wl.layer_dims[1:], strict=True)):
            lin = nn.Linear(i, o, dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(W0[k])
                lin.bias.zero_()
            layers.append(lin)
            if k < len(W0) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def trial() -> dict[str, Any]:
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        model = build()
        if wl.optimizer == "gd":
            opt = torch.optim.SGD(model.parameters(), lr=wl.learning_rate)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=wl.learning_rate, betas=(0.9, 0.999), eps=1e-8)
        loss_fn = nn.BCEWithLogitsLoss() if binary else nn.CrossEntropyLoss()
        model.train()
        for _ in range(wl.epochs):
            perm = torch.randperm(n, generator=gen)
            running = 0.0
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                xb, yb = X[idx], Y[idx]
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                running += loss.item() * len(idx)
        seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            out = model(Xt)
            pred = (out[:, 0] > 0).long() if binary else out.argmax(dim=1)
        acc = float((pred.numpy() == wl.y_test).mean())
        return {"seconds": seconds, "accuracy": acc, "final_train_cost": running / n}

    return trial


# ----------------------------------------------------------- scikit-learn
def sklearn_trial(wl: Workload, dtype, seed: int) -> Trial:
    """``MLPClassifier`` trained by one ``fit`` with ``max_iter = epochs``.

    One ``fit`` rather than ``partial_fit`` per epoch: ``partial_fit``
    re-validates the input and re-enters the solver on every call, which is
    per-epoch overhead a user training normally does not pay. ``tol=0``, a
    huge ``n_iter_no_change`` and no early stopping make it run every epoch;
    the ConvergenceWarning at the end is expected and silenced.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    class PresetInitMLP(MLPClassifier):
        """MLPClassifier whose initial weights are given (numpynet's), biases zero."""

        def _init_coef(self, fan_in, fan_out, dtype):  # scikit-learn's per-layer init hook
            W = next(self._preset)
            assert W.shape == (fan_in, fan_out)
            return W.astype(dtype, copy=True), np.zeros(fan_out, dtype=dtype)

    X, Xt = _cast(wl, dtype)
    W0 = initial_weights(wl, seed, dtype)
    solver = {
        "gd": dict(solver="sgd", momentum=0.0, nesterovs_momentum=False, learning_rate="constant"),
        "adam": dict(solver="adam", beta_1=0.9, beta_2=0.999, epsilon=1e-8),
    }[wl.optimizer]
    params = dict(
        hidden_layer_sizes=tuple(wl.layer_dims[1:-1]),
        activation="relu",
        alpha=0.0,
        batch_size=wl.batch_size,
        learning_rate_init=wl.learning_rate,
        max_iter=wl.epochs,
        shuffle=True,
        random_state=seed,
        tol=0.0,
        early_stopping=False,
        n_iter_no_change=10**9,
        **solver,
    )
    preset = hasattr(MLPClassifier, "_init_coef")

    def trial() -> dict[str, Any]:
        t0 = time.perf_counter()
        clf = (PresetInitMLP if preset else MLPClassifier)(**params)
        clf._preset = iter(W0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, wl.y_train)
        seconds = time.perf_counter() - t0
        assert clf.n_iter_ == wl.epochs, (clf.n_iter_, wl.epochs)
        return {
            "seconds": seconds,
            "accuracy": float(clf.score(Xt, wl.y_test)),
            "final_train_cost": float(clf.loss_curve_[-1]),
        }

    return trial
