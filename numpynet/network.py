"""The fully connected network: ``NeuralNetwork``.

Layout: every parameter lives in one flat vector ``_theta`` (all weight
matrices first, then all bias vectors); ``coefs_[l]`` (shape ``(n_in,
n_out)``) and ``intercepts_[l]`` are views into it, and the gradient has the
same layout. Each weight matrix is stored ``(n_out, n_in)`` row-major (as
PyTorch's ``Linear``), so ``coefs_[l]`` is the transpose of a C-ordered
block: the weight gradient ``dZ.T @ A`` is then written as a row-major
product, which OpenBLAS computes about a quarter faster than ``A.T @ dZ``
for the cat network's 12288 x 20 first layer. The optimizer therefore updates the whole network with a few
vectorised operations, and the gradient check packs and unpacks for free.

Hot path: one workspace of buffers sized for a mini-batch is allocated per
fit; each batch is gathered by index into it, forward and backward passes
write into preallocated arrays (``out=``), activations run in place and the
gradient with respect to the input data is never computed.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from typing import Any, Callable

import numpy as np

from . import _validation as check
from . import threads as blas_threads
from .activations import ACTIVATIONS, DERIVATIVES
from .exceptions import NotFittedError, TrainingDiverged
from .initializers import AUTO_INITIALIZATION, INITIALIZERS
from .losses import output_layer_for
from .metrics import balanced_accuracy, confusion_matrix, precision_recall_f1
from .optimizers import OPTIMIZERS, make_optimizer
from .schedules import SCHEDULES, make_schedule

logger = logging.getLogger(__name__)

Callback = Callable[[int, dict], None]
DTYPES = {"float64": np.float64, "float32": np.float32}
SAVE_FORMAT_VERSION = 2  # 2: fitted layer sizes stored (layer_dims may be None); weights (n_out, n_in)
DEFAULT_HIDDEN = (100,)  # scikit-learn MLPClassifier's default
PREDICT_CHUNK = 8192  # rows per forward pass at prediction time


def _checked_theta(path: str, data, dims: list[int]) -> np.ndarray:
    """The weights of an opened ``.npz``, read once their size is known to fit ``dims`` and the file.

    A crafted file may claim any layer sizes and any array shape; both are
    checked against each other and against the bytes the file can hold
    (deflate expands at most 1032-fold) before an array is allocated.
    """
    import zipfile

    need = sum(i * o for i, o in zip(dims[:-1], dims[1:])) + sum(dims[1:])
    info = data.zip.getinfo("theta.npy")
    with data.zip.open(info) as member:
        major, _ = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    count = math.prod(shape)
    if count != need:
        raise ValueError(f"{path}: {count} parameters do not fit layer_dims {dims}")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else 1032
    if count * dtype.itemsize > min(info.file_size, min(info.compress_size, os.path.getsize(path)) * ratio):
        raise ValueError(f"{path}: layer_dims {dims} need {count * dtype.itemsize} bytes of weights, more than "
                         "the file holds")
    return data["theta"]


def _from_layout_1(theta: np.ndarray, dims: list[int]) -> np.ndarray:
    """Parameters of format 1 (weights stored (n_in, n_out) row-major) in today's layout."""
    out, pos = theta.copy(), 0
    for i, o in zip(dims[:-1], dims[1:]):
        out[pos:pos + i * o] = theta[pos:pos + i * o].reshape(i, o).T.ravel()
        pos += i * o
    return out


def _same(a, b) -> bool:
    """Equality that never raises or returns an array (for repr of defaults)."""
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def _encode_known(classes: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    """Index of each label of ``y`` in the sorted ``classes``; unseen labels raise."""
    try:
        pos = np.searchsorted(classes, y)
    except (TypeError, ValueError):
        raise ValueError(f"{name} labels of type {y.dtype} cannot be compared with classes_ {classes.tolist()}") from None
    pos = np.clip(pos, 0, len(classes) - 1)
    unknown = classes[pos] != y
    if np.any(unknown):
        raise ValueError(
            f"{name} contains label(s) {np.unique(y[unknown])[:10].tolist()} not seen in training; "
            f"known classes: {classes.tolist()}")
    return pos.astype(np.intp)


def _json_scalar(value):
    """numpy scalars (np.int64 seed, np.float32 rate...) as plain Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"hyperparameter value {value!r} of type {type(value).__name__} cannot be saved")


class _Workspace:
    """Buffers for forward and backward passes over at most ``rows`` examples."""

    def __init__(self, dims: list[int], rows: int, dtype, dropout: bool):
        hidden = dims[1:-1]
        self.X = np.empty((rows, dims[0]), dtype=dtype)
        self.Y = np.empty((rows, dims[-1]), dtype=dtype)
        self.Z = [np.empty((rows, d), dtype=dtype) for d in dims[1:]]
        self.dA = [np.empty((rows, d), dtype=dtype) for d in hidden]
        self.D = [np.empty((rows, d), dtype=dtype) for d in hidden] if dropout else None
        self.R = [np.empty((rows, d), dtype=dtype) for d in hidden] if dropout else None
        self.M = [np.empty((rows, d), dtype=bool) for d in hidden] if dropout else None


class NeuralNetwork:
    """A fully connected classifier trained with mini-batch gradient methods.

    Hyperparameters keep the names of the original implementation. Data is
    ``(n_samples, n_features)``. The sizes of the input and output layers
    are inferred at ``fit`` (as in scikit-learn): the input from the number
    of features, the output from the number of classes (one sigmoid unit
    with binary cross-entropy for 2 classes, as the original; k softmax units
    with categorical cross-entropy for k > 2).

    Fitted attributes (scikit-learn conventions): ``n_features_in_``,
    ``classes_``, ``layer_dims_`` (all sizes, input and output included),
    ``n_layers_``, ``n_outputs_``, ``out_activation_`` ("logistic" or
    "softmax"), ``coefs_`` / ``intercepts_`` (per-layer weights ``(n_in,
    n_out)`` and biases), ``n_iter_`` (epochs run), ``n_threads_`` (BLAS
    threads used by the training loop, None if not controllable) and the
    per-epoch histories ``costs_``, ``train_accuracies_``,
    ``learning_rates_``, ``val_costs_``, ``val_accuracies_``, ``val_balanced_accuracies_``.

    Args:
        layer_dims: optional, the original's way to give the architecture:
            sizes of all layers, input and output included. When given, it
            fixes the hidden sizes and ``fit`` checks its ends against the
            data (``layer_dims[0]`` = features; ``layer_dims[-1]`` = 1 for 2
            classes or k for k classes, 2 also allowed for 2 classes).
        hidden_layer_sizes: sizes of the hidden layers (scikit-learn's name);
            used when ``layer_dims`` is None. A value other than the default
            must agree with ``layer_dims[1:-1]`` when both are given.
        seed: seeds one ``np.random.Generator`` used for initialisation,
            shuffling and dropout masks.
        keep_prob: dropout keep probability of hidden units, in (0, 1]; used
            when ``regularization`` includes dropout.
        learning_rate: initial learning rate, > 0.
        lambd: L2 strength, >= 0; used when ``regularization`` includes l2.
            The cost adds ``lambd / (2 m) * sum ||W||^2`` (m = training examples).
        regularization: None, "l2", "dropout" or "l2+dropout" (also the
            original spellings "L2_regularization" and "l2_regularizer").
        print_cost: log the cost of every epoch at INFO level.
        activation_function: hidden activation: relu, tanh, sigmoid, leakyrelu.
        mini_batch_size: examples per batch; the last partial batch is kept.
        optimizer: gd, momentum (uses beta1), rmsprop (uses beta2) or adam
            (uses beta1 and beta2).
        beta1, beta2: moment decay rates in [0, 1).
        decay_rate: learning-rate decay strength, >= 0.
        decay: None, "continuous" (lr0 / (1 + decay_rate * epoch)) or
            "discrete" (lr0 / (1 + decay_rate * floor(epoch / decay_interval))).
        epoch: number of epochs (full passes over the training data).
        decay_interval: epochs per step of the discrete decay.
        epsilon: added to the denominator of rmsprop and adam.
        dtype: "float64" or "float32" for parameters and computation.
        initialization: "he" (std sqrt(2 / fan_in)), "xavier" (std
            sqrt(2 / (fan_in + fan_out))) or "auto" (he for relu and
            leakyrelu, xavier for tanh and sigmoid).
        n_threads: BLAS threads for the training loop. None (default):
            chosen by ``numpynet.threads.choose_threads`` within the thread
            count in force (one thread for skinny layers, all of them for
            wide ones); an integer >= 1 forces that many.
    """

    _estimator_type = "classifier"

    def __init__(
        self,
        layer_dims=None,
        hidden_layer_sizes=DEFAULT_HIDDEN,
        seed: int = 0,
        keep_prob: float = 1.0,
        learning_rate: float = 0.0075,
        lambd: float = 1.0,
        regularization: str | None = None,
        print_cost: bool = False,
        activation_function: str = "relu",
        mini_batch_size: int = 32,
        optimizer: str = "gd",
        beta1: float = 0.9,
        beta2: float = 0.999,
        decay_rate: float = 1.0,
        decay: str | None = None,
        epoch: int = 2000,
        decay_interval: int = 1000,
        epsilon: float = 1e-8,
        dtype: str = "float64",
        initialization: str = "he",
        n_threads: int | None = None,
    ):
        self.layer_dims = layer_dims
        self.hidden_layer_sizes = hidden_layer_sizes
        self.seed = seed
        self.keep_prob = keep_prob
        self.learning_rate = learning_rate
        self.lambd = lambd
        self.regularization = regularization
        self.print_cost = print_cost
        self.activation_function = activation_function
        self.mini_batch_size = mini_batch_size
        self.optimizer = optimizer
        self.beta1 = beta1
        self.beta2 = beta2
        self.decay_rate = decay_rate
        self.decay = decay
        self.epoch = epoch
        self.decay_interval = decay_interval
        self.epsilon = epsilon
        self.dtype = dtype
        self.initialization = initialization
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        """Estimator tags for scikit-learn >= 1.6 (imported lazily: only sklearn calls this)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters by name (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "NeuralNetwork":
        """Set hyperparameters by name; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"unknown hyperparameter {name!r}; valid names: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults.get(k))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _validated(self) -> dict[str, Any]:
        """Check every hyperparameter; return normalised settings."""
        dims = None if self.layer_dims is None else check.check_layer_dims(self.layer_dims)
        hidden = check.check_hidden_layer_sizes(self.hidden_layer_sizes)
        if dims is not None and hidden != dims[1:-1] and hidden != list(DEFAULT_HIDDEN):
            raise ValueError(
                f"hidden_layer_sizes={self.hidden_layer_sizes!r} is invalid: it disagrees with "
                f"layer_dims={self.layer_dims!r} (hidden sizes {dims[1:-1]}); give one of the two")
        check.check_n_threads(self.n_threads)
        check.check_int("seed", self.seed, 0)
        check.check_real("keep_prob", self.keep_prob, 0, 1, low_open=True)
        check.check_real("learning_rate", self.learning_rate, 0, None, low_open=True)
        check.check_real("lambd", self.lambd, 0)
        regs = check.normalise_regularization(self.regularization)
        check.check_choice("activation_function", self.activation_function, ACTIVATIONS)
        check.check_int("mini_batch_size", self.mini_batch_size, 1)
        check.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check.check_real("beta1", self.beta1, 0, 1, high_open=True)
        check.check_real("beta2", self.beta2, 0, 1, high_open=True)
        check.check_real("decay_rate", self.decay_rate, 0)
        check.check_choice("decay", self.decay, SCHEDULES)
        check.check_int("epoch", self.epoch, 1)
        check.check_int("decay_interval", self.decay_interval, 1)
        check.check_real("epsilon", self.epsilon, 0, None, low_open=True)
        check.check_choice("dtype", self.dtype, DTYPES)
        check.check_choice("initialization", self.initialization, [*INITIALIZERS, "auto"])
        init = self.initialization
        if init == "auto":
            init = AUTO_INITIALIZATION[self.activation_function]
        return {
            "layer_dims": dims,
            "hidden": dims[1:-1] if dims is not None else hidden,
            "dtype": np.dtype(DTYPES[self.dtype]),
            "l2": "l2" in regs and self.lambd > 0,
            "dropout": "dropout" in regs and self.keep_prob < 1,
            "init": INITIALIZERS[init],
        }

    # ------------------------------------------------------------ architecture
    def _check_X_fit(self, X, name: str, s: dict[str, Any]) -> np.ndarray:
        """X for training; its features fix the input size (or must match layer_dims[0])."""
        n_in = s["layer_dims"][0] if s["layer_dims"] is not None else None
        return check.check_features(X, name, n_in, s["dtype"])

    def _architecture(self, s: dict[str, Any], n_features: int, n_classes: int) -> list[int]:
        """All layer sizes for data with ``n_features`` features and ``n_classes`` classes."""
        dims = s["layer_dims"]
        if dims is not None:  # the original's explicit sizes: check them against the data
            n_out = dims[-1]
            if n_out == 1 and n_classes != 2:
                raise ValueError(
                    f"y has {n_classes} distinct label(s) but layer_dims[-1] is 1: a single sigmoid "
                    "output needs exactly 2 classes (use layer_dims[-1] = k for k classes)")
            if n_out > 1 and n_classes != n_out:
                raise ValueError(
                    f"y has {n_classes} distinct label(s) but layer_dims[-1] is {n_out}: a softmax "
                    "output needs exactly one unit per class (use 1 unit for 2 classes if preferred)")
            return dims
        if n_classes < 2:
            raise ValueError(f"y has {n_classes} class: a classifier needs at least 2 classes in y")
        return [n_features, *s["hidden"], 1 if n_classes == 2 else n_classes]

    def _set_architecture(self, dims: list[int]) -> None:
        self.layer_dims_ = list(dims)
        self.n_features_in_ = dims[0]
        self.n_layers_ = len(dims)
        self.n_outputs_ = dims[-1]
        self.out_activation_ = "logistic" if dims[-1] == 1 else "softmax"

    # -------------------------------------------------------------- parameters
    def _allocate(self, dims: list[int], dtype) -> None:
        shapes = list(zip(dims[:-1], dims[1:]))
        self._n_weights = sum(i * o for i, o in shapes)
        size = self._n_weights + sum(dims[1:])
        self._theta = np.zeros(size, dtype=dtype)
        self._grad = np.zeros(size, dtype=dtype)
        self.coefs_, self._gW = self._views(shapes)
        self.intercepts_, self._gb = self._bias_views(dims[1:])

    def _views(self, shapes):
        coefs, grads, pos = [], [], 0
        for i, o in shapes:  # stored (o, i) row-major; seen (i, o)
            coefs.append(self._theta[pos:pos + i * o].reshape(o, i).T)
            grads.append(self._grad[pos:pos + i * o].reshape(o, i).T)
            pos += i * o
        return coefs, grads

    def _bias_views(self, sizes):
        coefs, grads, pos = [], [], self._n_weights
        for o in sizes:
            coefs.append(self._theta[pos:pos + o])
            grads.append(self._grad[pos:pos + o])
            pos += o
        return coefs, grads

    def _initialise(self, rng: np.random.Generator, init, dims: list[int], dtype) -> None:
        self._allocate(dims, dtype)
        for W, (fan_in, fan_out) in zip(self.coefs_, zip(dims[:-1], dims[1:])):
            W[...] = init(rng, fan_in, fan_out, dtype)

    def __getstate__(self):
        state = self.__dict__.copy()
        for views in ("coefs_", "intercepts_", "_gW", "_gb"):
            state.pop(views, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for p in inspect.signature(NeuralNetwork.__init__).parameters.values():
            if p.name != "self" and p.name not in state:  # pickled before the parameter existed
                setattr(self, p.name, p.default)
        if "_theta" in state:
            dims = [int(d) for d in state.get("layer_dims_") or self.layer_dims]  # older pickles lack layer_dims_
            if "layer_dims_" not in state:  # pickled before format 2: weights (n_in, n_out)
                self._set_architecture(dims)
                self._theta = _from_layout_1(self._theta, dims)
            shapes = list(zip(dims[:-1], dims[1:]))
            self.coefs_, self._gW = self._views(shapes)
            self.intercepts_, self._gb = self._bias_views(dims[1:])

    # ------------------------------------------------------------------ labels
    @staticmethod
    def _unique_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted classes, index of each label in them)."""
        try:
            classes, yidx = np.unique(y, return_inverse=True)
        except TypeError as exc:  # e.g. a mix of str and int labels cannot be sorted
            raise ValueError(f"y labels must be mutually comparable (all numbers or all strings): {exc}") from None
        return classes, yidx.reshape(-1).astype(np.intp)

    def _encode_known_labels(self, y: np.ndarray, name: str) -> np.ndarray:
        return _encode_known(self.classes_, y, name)

    def _targets(self, yidx: np.ndarray, n_out: int, dtype) -> np.ndarray:
        if n_out == 1:
            return yidx.astype(dtype).reshape(-1, 1)
        Y = np.zeros((len(yidx), n_out), dtype=dtype)
        Y[np.arange(len(yidx)), yidx] = 1
        return Y

    # ----------------------------------------------------------------- passes
    def _forward(self, Xb: np.ndarray, ws: _Workspace, mb: int, masks: list | None) -> np.ndarray:
        """Logits of the output layer; hidden activations stay in ``ws``."""
        act = ACTIVATIONS[self.activation_function]
        last = len(self.coefs_) - 1
        inv_keep = 1.0 / self.keep_prob
        A = Xb
        for l, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            Z = ws.Z[l][:mb]
            np.matmul(A, W, out=Z)
            Z += b
            if l == last:
                return Z
            act(Z)
            if masks is not None:
                D = ws.D[l][:mb]
                np.multiply(Z, masks[l], out=D)
                D *= inv_keep
                A = D
            else:
                A = Z
        raise AssertionError("unreachable")

    def _backward(self, Xb: np.ndarray, ws: _Workspace, mb: int, masks: list | None,
                  l2_coef: float) -> None:
        """Gradients into ``_grad``; the output buffer must hold dL/dZ."""
        deriv = DERIVATIVES[self.activation_function]
        inv_keep = 1.0 / self.keep_prob
        dZ = ws.Z[-1][:mb]
        for l in range(len(self.coefs_) - 1, -1, -1):
            if l == 0:
                A_prev = Xb
            elif masks is not None:
                A_prev = ws.D[l - 1][:mb]
            else:
                A_prev = ws.Z[l - 1][:mb]
            np.matmul(dZ.T, A_prev, out=self._gW[l].T)
            np.sum(dZ, axis=0, out=self._gb[l])
            if l == 0:
                break  # the gradient with respect to the data is never needed
            dA = ws.dA[l - 1][:mb]
            np.matmul(dZ, self.coefs_[l].T, out=dA)
            if masks is not None:
                dA *= masks[l - 1]
                dA *= inv_keep
            deriv(ws.Z[l - 1][:mb], dA)
            dZ = dA
        if l2_coef:
            nW = self._n_weights
            self._grad[:nW] += l2_coef * self._theta[:nW]

    def _l2_cost(self, m: int) -> float:
        W = self._theta[:self._n_weights]
        return float(self.lambd / (2 * m) * np.dot(W, W))

    def _draw_masks(self, rng: np.random.Generator, ws: _Workspace, mb: int) -> list[np.ndarray]:
        masks = []
        for R, M in zip(ws.R, ws.M):
            r = R[:mb]
            rng.random(dtype=r.dtype, out=r)
            np.less(r, self.keep_prob, out=M[:mb])
            masks.append(M[:mb])
        return masks

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Output-layer logits for all rows of X (no dropout), in chunks."""
        dims = self.layer_dims_
        out = np.empty((len(X), dims[-1]), dtype=self._theta.dtype)
        rows = min(len(X), PREDICT_CHUNK)
        ws = _Workspace(dims, rows, self._theta.dtype, dropout=False)
        for start in range(0, len(X), rows):
            chunk = X[start:start + rows]
            out[start:start + len(chunk)] = self._forward(chunk, ws, len(chunk), None)
        return out

    # -------------------------------------------------------------------- fit
    def fit(self, X, y, X_val=None, y_val=None, callback: Callback | None = None) -> "NeuralNetwork":
        """Train on (X, y); optionally track (X_val, y_val) every epoch.

        ``callback(epoch, metrics)`` runs after each epoch with ``train_cost``,
        ``train_accuracy``, ``learning_rate`` (and ``val_cost``,
        ``val_accuracy``, ``val_balanced_accuracy`` with validation data). An exception it raises stops
        training and propagates; the history attributes keep what was done.

        ``train_cost`` and ``train_accuracy`` are accumulated over the
        epoch's mini-batches on the forward passes used for the updates (as
        most frameworks report them): each batch contributes its
        cross-entropy *and* the L2 term, both at the weights its update
        started from (with one full batch: the cost at the epoch's starting
        weights). ``val_cost`` is the validation cross-entropy plus the L2
        term, both at the epoch's final weights.
        """
        s = self._validated()
        dtype = s["dtype"]
        X = self._check_X_fit(X, "X", s)
        y = check.check_labels(y, "y", len(X))
        classes, yidx = self._unique_labels(y)
        dims = self._architecture(s, X.shape[1], len(classes))
        validation = None
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if X_val is not None:
            Xv = check.check_features(X_val, "X_val", dims[0], dtype, "X has {n}")
            yv = _encode_known(classes, check.check_labels(y_val, "y_val", len(Xv), "X_val"), "y_val")
            validation = (Xv, yv, self._targets(yv, dims[-1], dtype))
        Y = self._targets(yidx, dims[-1], dtype)

        n = len(X)
        rng = np.random.default_rng(self.seed)
        self._initialise(rng, s["init"], dims, dtype)
        self._set_architecture(dims)
        self.classes_ = classes
        self.costs_, self.learning_rates_, self.train_accuracies_ = [], [], []
        self.val_costs_, self.val_accuracies_, self.val_balanced_accuracies_ = [], [], []
        self.n_iter_ = 0

        batch = min(self.mini_batch_size, n)
        with blas_threads.limited(dims, batch, self.n_threads) as used:
            self.n_threads_ = used
            self._train(X, Y, yidx, validation, s, dims, batch, rng, callback)
        return self

    def _train(self, X, Y, yidx, validation, s, dims, batch, rng, callback) -> None:
        """The epoch loop of ``fit`` (all inputs validated, parameters initialised)."""
        n, dtype = len(X), s["dtype"]
        ws = _Workspace(dims, batch, dtype, s["dropout"])
        opt = make_optimizer(self.optimizer, self._theta.size, dtype, self.beta1, self.beta2, self.epsilon)
        schedule = make_schedule(self.decay, self.learning_rate, self.decay_rate, self.decay_interval)
        output = output_layer_for(dims[-1])
        l2_coef = self.lambd / n if s["l2"] else 0.0
        # plain gradient descent: the learning rate is folded into the small
        # output delta, so the weight gradients come out as the update itself
        # and the large first-layer weights are read once less per batch
        fold = opt.folds_learning_rate

        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for epoch in range(self.epoch):
                lr = schedule(epoch)
                perm = rng.permutation(n)
                loss_sum, l2_sum, correct = 0.0, 0.0, 0
                for start in range(0, n, batch):
                    idx = perm[start:start + batch]
                    mb = len(idx)
                    Xb = np.take(X, idx, axis=0, out=ws.X[:mb], mode="clip")  # idx in range: clip skips buffering
                    Yb = np.take(Y, idx, axis=0, out=ws.Y[:mb], mode="clip")
                    masks = self._draw_masks(rng, ws, mb) if s["dropout"] else None
                    if s["l2"]:  # at the weights this batch's update starts from, as its loss
                        l2_sum += mb * self._l2_cost(n)
                    Z = self._forward(Xb, ws, mb, masks)
                    batch_loss = output.loss_and_probs(Z, Yb)  # Z now holds probabilities
                    if not math.isfinite(batch_loss):
                        last = self.costs_[-1] if self.costs_ else None
                        raise TrainingDiverged(epoch, last)
                    loss_sum += batch_loss
                    correct += int(np.count_nonzero(output.predict_index(Z) == yidx[idx]))
                    Z -= Yb
                    if fold:
                        Z *= lr / mb
                        self._backward(Xb, ws, mb, masks, lr * l2_coef)
                        opt.apply_update(self._theta, self._grad)
                    else:
                        Z *= 1.0 / mb
                        self._backward(Xb, ws, mb, masks, l2_coef)
                        opt.step(self._theta, self._grad, lr)
                opt.flush_subnormals()
                cost = (loss_sum + l2_sum) / n
                # the cost was measured before each update: check what the last update left
                if not math.isfinite(cost) or not np.isfinite(self._theta).all():
                    raise TrainingDiverged(epoch, self.costs_[-1] if self.costs_ else None)
                metrics = {"train_cost": cost, "train_accuracy": correct / n, "learning_rate": lr}
                self.costs_.append(cost)
                self.learning_rates_.append(lr)
                self.train_accuracies_.append(correct / n)
                self.n_iter_ = epoch + 1
                if validation is not None:
                    val_loss, val_acc, val_bal = self._loss_and_accuracy(*validation)
                    val_cost = val_loss + (self._l2_cost(n) if s["l2"] else 0.0)
                    metrics.update(val_cost=val_cost, val_accuracy=val_acc, val_balanced_accuracy=val_bal)
                    self.val_costs_.append(val_cost)
                    self.val_accuracies_.append(val_acc)
                    self.val_balanced_accuracies_.append(val_bal)
                if self.print_cost:
                    logger.info("epoch %d: cost %.6f", epoch, cost)
                if callback is not None:
                    callback(epoch, metrics)

    def _loss_and_accuracy(self, X: np.ndarray, yidx: np.ndarray, Y: np.ndarray) -> tuple[float, float, float]:
        """Mean cross-entropy (no L2), accuracy and balanced accuracy on encoded data."""
        Z = self._logits(X)
        output = output_layer_for(Z.shape[1])
        loss = output.loss_and_probs(Z, Y) / len(X)
        predicted = output.predict_index(Z)
        acc = float(np.count_nonzero(predicted == yidx)) / len(X)
        return loss, acc, balanced_accuracy(yidx, predicted, len(self.classes_))

    # ------------------------------------------------------------- inference
    def __sklearn_is_fitted__(self) -> bool:
        """What scikit-learn's ``check_is_fitted`` asks."""
        return hasattr(self, "_theta") and hasattr(self, "classes_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(X, y) or NeuralNetwork.load(path)")

    def _check_input(self, X) -> np.ndarray:
        self._check_fitted()
        return check.check_features(X, "X", self.n_features_in_, self._theta.dtype,
                                    "the network was fitted with {n} (n_features_in_)"
                                    if self.layer_dims is None else "layer_dims[0] is {n}")

    def _scores(self, X):
        """Output-layer activations (in place in the logits) and the output layer."""
        X = self._check_input(X)
        with np.errstate(over="ignore", under="ignore"):
            Z = self._logits(X)
            output = output_layer_for(Z.shape[1])
            output.probs(Z)
        return Z, output

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        Z, output = self._scores(X)
        with np.errstate(over="ignore", under="ignore"):
            return output.full_proba(Z)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (values of ``classes_``)."""
        Z, output = self._scores(X)
        return self.classes_[output.predict_index(Z)]

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        return self.evaluate(X, y)["accuracy"]

    def evaluate(self, X, y) -> dict[str, Any]:
        """Accuracy, precision, recall, F1, log loss and confusion matrix.

        Precision, recall and F1 are for the positive class (the larger of
        ``classes_``) with 2 classes and macro-averaged otherwise. The
        confusion matrix has rows = true class, columns = predicted class,
        both in ``classes_`` order.
        """
        X = self._check_input(X)
        yidx = self._encode_known_labels(check.check_labels(y, "y", len(X)), "y")
        k = len(self.classes_)
        with np.errstate(over="ignore", under="ignore"):
            Z = self._logits(X)
            output = output_layer_for(Z.shape[1])
            loss = output.loss_and_probs(Z, self._targets(yidx, Z.shape[1], Z.dtype)) / len(X)
            pred = output.predict_index(Z)
        cm = confusion_matrix(yidx, pred, k)
        precision, recall, f1 = precision_recall_f1(cm)
        return {
            "accuracy": float(np.trace(cm)) / len(X),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "log_loss": float(loss),
            "confusion_matrix": cm,
        }

    # --------------------------------------------------------- gradient check
    def grad_check(self, X, y, epsilon: float = 1e-7) -> float:
        """Relative difference between backprop and central differences.

        Returns ``||g - g_num|| / (||g|| + ||g_num||)`` over all parameters of
        the cost ``mean loss + L2 term`` on (X, y). ``g`` is backprop in the
        network's own dtype; the reference ``g_num`` is always computed in
        float64 (central differences with step ``epsilon``, at the same
        weights and data converted exactly to float64), so it is accurate to
        about 1e-9 whatever the dtype. The figure therefore measures backprop
        at its dtype's precision: below 1e-7 for float64, about 1e-7 to 1e-5
        for float32 (its rounding); a wrong derivative gives more than 1e-4.
        (Central differences *in* float32 would be dominated by rounding:
        about 0.5 with ``epsilon=1e-7``.)

        With dropout on, one set of masks (drawn from ``seed``) is held fixed
        for every evaluation. An unfitted network is initialised from
        ``seed`` first.
        """
        s = self._validated()
        check.check_real("epsilon", epsilon, 0, None, low_open=True)
        if hasattr(self, "_theta"):
            dims, dtype = self.layer_dims_, self._theta.dtype
            X = check.check_features(X, "X", dims[0], dtype, "the network has {n} inputs")
            yidx = self._encode_known_labels(check.check_labels(y, "y", len(X)), "y")
        else:
            dtype = s["dtype"]
            X = self._check_X_fit(X, "X", s)
            classes, yidx = self._unique_labels(check.check_labels(y, "y", len(X)))
            dims = self._architecture(s, X.shape[1], len(classes))
            self._initialise(np.random.default_rng(self.seed), s["init"], dims, dtype)
            self._set_architecture(dims)
            self.classes_ = classes
        Y = self._targets(yidx, dims[-1], dtype)
        m = len(X)
        ws = _Workspace(dims, m, dtype, s["dropout"])
        masks = self._draw_masks(np.random.default_rng(self.seed), ws, m) if s["dropout"] else None
        output = output_layer_for(dims[-1])
        l2 = s["l2"]

        def cost(Xc: np.ndarray, Yc: np.ndarray, wsc: _Workspace) -> float:
            Z = self._forward(Xc, wsc, m, masks)
            value = output.loss_and_probs(Z, Yc) / m
            return value + (self._l2_cost(m) if l2 else 0.0)

        cost(X, Y, ws)
        Z = ws.Z[-1][:m]
        Z -= Y
        Z *= 1.0 / m
        self._backward(X, ws, m, masks, self.lambd / m if l2 else 0.0)
        analytic = self._grad.astype(np.float64)

        # the reference: the same network and data in float64
        own = (self._theta, self._grad, self.coefs_, self.intercepts_, self._gW, self._gb)
        try:
            theta64 = self._theta.astype(np.float64)
            self._allocate(dims, np.float64)
            self._theta[...] = theta64
            X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
            ws64 = _Workspace(dims, m, np.float64, s["dropout"])
            theta = self._theta
            numeric = np.empty_like(analytic)
            for i in range(theta.size):
                saved = theta[i]
                theta[i] = saved + epsilon
                plus = cost(X64, Y64, ws64)
                theta[i] = saved - epsilon
                minus = cost(X64, Y64, ws64)
                theta[i] = saved
                numeric[i] = (plus - minus) / (2 * epsilon)
        finally:
            self._theta, self._grad, self.coefs_, self.intercepts_, self._gW, self._gb = own
        denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
        return float(np.linalg.norm(analytic - numeric) / denom) if denom else 0.0

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> str:
        """Write weights, hyperparameters and classes to one ``.npz`` file.

        Returns the path written (numpy appends ``.npz`` when missing).
        """
        self._check_fitted()
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        params = NeuralNetwork.get_params(self)
        if params["layer_dims"] is not None:
            params["layer_dims"] = [int(d) for d in params["layer_dims"]]
        hidden = params["hidden_layer_sizes"]
        params["hidden_layer_sizes"] = int(hidden) if np.ndim(hidden) == 0 else [int(d) for d in hidden]
        np.savez(
            path,
            format_version=np.int64(SAVE_FORMAT_VERSION),
            layer_dims=np.asarray(self.layer_dims_, dtype=np.int64),
            hyperparameters=np.str_(json.dumps(params, default=_json_scalar)),
            theta=self._theta,
            classes=self.classes_ if self.classes_.dtype != object else np.asarray(self.classes_.tolist()),
            costs=np.asarray(getattr(self, "costs_", []), dtype=np.float64),
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuralNetwork":
        """Load a network written by :meth:`save`; it predicts identically."""
        path = os.fspath(path)
        if not path.endswith(".npz") and not os.path.exists(path):
            path += ".npz"  # as save() appended it
        with np.load(path, allow_pickle=False) as data:
            missing = {"format_version", "hyperparameters", "theta", "classes"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a numpynet model file: missing {sorted(missing)}")
            version = int(data["format_version"])
            if version > SAVE_FORMAT_VERSION:
                raise ValueError(f"{path} has model format {version}; this numpynet reads up to {SAVE_FORMAT_VERSION}")
            params = json.loads(str(data["hyperparameters"]))
            if isinstance(params.get("hidden_layer_sizes"), list):
                params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
            model = cls(**params)
            # format 1 had no fitted sizes: its layer_dims hyperparameter was required
            fitted = data["layer_dims"].tolist() if "layer_dims" in data.files else model.layer_dims
            dims = check.check_layer_dims(fitted)
            theta = _checked_theta(path, data, dims)  # sizes checked before anything is allocated
            model._allocate(dims, theta.dtype)
            model._theta[...] = theta if version >= 2 else _from_layout_1(theta, dims)
            model.classes_ = data["classes"]
            model.costs_ = data["costs"].tolist()
        model._set_architecture(dims)
        return model
