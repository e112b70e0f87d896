"""The fully connected network: ``NeuralNetwork``, the model's public face.

This module holds the model API: hyperparameters and their checks, the
architecture inferred at ``fit``, the epoch loop, prediction and
``evaluate``. The rest is delegated, one concern per module:
``parameters`` (the flat parameter vector and its per-layer views),
``propagation`` (forward and backward passes over preallocated buffers),
``labels`` (classes and targets), ``gradient_check`` and ``model_file``
(``save`` / ``load``).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from typing import Any, Callable

import numpy as np

from . import _validation as check
from . import gradient_check, labels, model_file, parameters
from . import threads as blas_threads
from .activations import ACTIVATIONS
from .exceptions import NotFittedError, TrainingDiverged
from .initializers import AUTO_INITIALIZATION, INITIALIZERS
from .losses import output_layer_for
from .metrics import balanced_accuracy, confusion_matrix, precision_recall_f1
from .optimizers import OPTIMIZERS, make_optimizer
from .propagation import Passes, Workspace
from .schedules import SCHEDULES, make_schedule

logger = logging.getLogger(__name__)

Callback = Callable[[int, dict], None]
DTYPES = {"float64": np.float64, "float32": np.float32}
DEFAULT_HIDDEN = (100,)  # scikit-learn MLPClassifier's default


def _same(a, b) -> bool:
    """Equality that never raises or returns an array (for repr of defaults)."""
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


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

        return Tags(
            estimator_type="classifier", target_tags=TargetTags(required=True), classifier_tags=ClassifierTags()
        )

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
                f"layer_dims={self.layer_dims!r} (hidden sizes {dims[1:-1]}); give one of the two"
            )
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
                    "output needs exactly 2 classes (use layer_dims[-1] = k for k classes)"
                )
            if n_out > 1 and n_classes != n_out:
                raise ValueError(
                    f"y has {n_classes} distinct label(s) but layer_dims[-1] is {n_out}: a softmax "
                    "output needs exactly one unit per class (use 1 unit for 2 classes if preferred)"
                )
            return dims
        if n_classes < 2:
            raise ValueError(f"y has {n_classes} class: a classifier needs at least 2 classes in y")
        return [n_features, *s["hidden"], labels.output_units(n_classes)]

    def _set_architecture(self, dims: list[int]) -> None:
        self.layer_dims_ = list(dims)
        self.n_features_in_ = dims[0]
        self.n_layers_ = len(dims)
        self.n_outputs_ = dims[-1]
        self.out_activation_ = "logistic" if dims[-1] == 1 else "softmax"

    # -------------------------------------------------------------- parameters
    def _allocate(self, dims: list[int], dtype) -> None:
        """Zero parameters and gradient for ``dims``; ``coefs_`` and ``intercepts_`` view the parameters."""
        size = parameters.n_parameters(dims)
        self._theta = np.zeros(size, dtype=dtype)
        self._grad = np.zeros(size, dtype=dtype)
        self.coefs_, self.intercepts_ = parameters.unpack(self._theta, dims)

    def _initialise(self, rng: np.random.Generator, init, dims: list[int], dtype) -> None:
        self._allocate(dims, dtype)
        for W, (fan_in, fan_out) in zip(self.coefs_, parameters.layer_shapes(dims), strict=True):
            W[...] = init(rng, fan_in, fan_out, dtype)

    def _passes(self, backward: bool = False) -> Passes:
        """Passes on this network's own parameters (and, for ``backward``, into its own gradient)."""
        return Passes(
            self._theta,
            self.layer_dims_,
            self.activation_function,
            self.keep_prob,
            grad=self._grad if backward else None,
            views=(self.coefs_, self.intercepts_),
        )

    def __getstate__(self):
        state = self.__dict__.copy()
        for views in ("coefs_", "intercepts_"):
            state.pop(views, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for p in inspect.signature(NeuralNetwork.__init__).parameters.values():
            if p.name != "self" and p.name not in state:  # pickled before the parameter existed
                setattr(self, p.name, p.default)
        for stale in ("_n_weights", "_gW", "_gb"):  # in older pickles; the passes derive these themselves
            self.__dict__.pop(stale, None)
        if "_theta" in state:
            dims = [int(d) for d in state.get("layer_dims_") or self.layer_dims]  # older pickles lack layer_dims_
            if "layer_dims_" not in state:  # pickled before format 2: weights (n_in, n_out)
                self._set_architecture(dims)
                self._theta = parameters.from_layout_1(self._theta, dims)
            self.coefs_, self.intercepts_ = parameters.unpack(self._theta, dims)

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
        classes, yidx = labels.unique_labels(y)
        dims = self._architecture(s, X.shape[1], len(classes))
        validation = None
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if X_val is not None:
            Xv = check.check_features(X_val, "X_val", dims[0], dtype, "X has {n}")
            yv = labels.encode_known(classes, check.check_labels(y_val, "y_val", len(Xv), "X_val"), "y_val")
            validation = (Xv, yv, labels.targets(yv, dims[-1], dtype))
        Y = labels.targets(yidx, dims[-1], dtype)

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
        ws = Workspace(dims, batch, dtype, s["dropout"])
        passes = self._passes(backward=True)
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
                    idx = perm[start : start + batch]
                    mb = len(idx)
                    Xb = np.take(X, idx, axis=0, out=ws.X[:mb], mode="clip")  # idx in range: clip skips buffering
                    Yb = np.take(Y, idx, axis=0, out=ws.Y[:mb], mode="clip")
                    masks = ws.draw_masks(rng, mb, self.keep_prob) if s["dropout"] else None
                    if s["l2"]:  # at the weights this batch's update starts from, as its loss
                        l2_sum += mb * passes.l2_cost(self.lambd, n)
                    Z = passes.forward(Xb, ws, mb, masks)
                    batch_loss = output.loss_and_probs(Z, Yb)  # Z now holds probabilities
                    if not math.isfinite(batch_loss):
                        last = self.costs_[-1] if self.costs_ else None
                        raise TrainingDiverged(epoch, last)
                    loss_sum += batch_loss
                    correct += int(np.count_nonzero(output.predict_index(Z) == yidx[idx]))
                    Z -= Yb
                    if fold:
                        Z *= lr / mb
                        passes.backward(Xb, ws, mb, masks, lr * l2_coef)
                        opt.apply_update(self._theta, self._grad)
                    else:
                        Z *= 1.0 / mb
                        passes.backward(Xb, ws, mb, masks, l2_coef)
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
                    val_loss, val_acc, val_bal = self._loss_and_accuracy(passes, *validation)
                    val_cost = val_loss + (passes.l2_cost(self.lambd, n) if s["l2"] else 0.0)
                    metrics.update(val_cost=val_cost, val_accuracy=val_acc, val_balanced_accuracy=val_bal)
                    self.val_costs_.append(val_cost)
                    self.val_accuracies_.append(val_acc)
                    self.val_balanced_accuracies_.append(val_bal)
                if self.print_cost:
                    logger.info("epoch %d: cost %.6f", epoch, cost)
                if callback is not None:
                    callback(epoch, metrics)

    def _loss_and_accuracy(
        self, passes: Passes, X: np.ndarray, yidx: np.ndarray, Y: np.ndarray
    ) -> tuple[float, float, float]:
        """Mean cross-entropy (no L2), accuracy and balanced accuracy on encoded data."""
        Z = passes.logits(X)
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
                f"this {type(self).__name__} is not fitted yet: call fit(X, y) or NeuralNetwork.load(path)"
            )

    def _check_input(self, X) -> np.ndarray:
        self._check_fitted()
        return check.check_features(
            X,
            "X",
            self.n_features_in_,
            self._theta.dtype,
            "the network was fitted with {n} (n_features_in_)" if self.layer_dims is None else "layer_dims[0] is {n}",
        )

    def _scores(self, X):
        """Output-layer activations (in place in the logits) and the output layer."""
        X = self._check_input(X)
        with np.errstate(over="ignore", under="ignore"):
            Z = self._passes().logits(X)
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
        yidx = labels.encode_known(self.classes_, check.check_labels(y, "y", len(X)), "y")
        k = len(self.classes_)
        with np.errstate(over="ignore", under="ignore"):
            Z = self._passes().logits(X)
            output = output_layer_for(Z.shape[1])
            loss = output.loss_and_probs(Z, labels.targets(yidx, Z.shape[1], Z.dtype)) / len(X)
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
        for every evaluation. The network is only read: its parameters,
        gradient buffer and every attribute are as they were. An unfitted
        network is initialised from ``seed`` first (as ``fit`` would), and
        stays initialised.
        """
        s = self._validated()
        check.check_real("epsilon", epsilon, 0, None, low_open=True)
        if hasattr(self, "_theta"):
            dims, dtype = self.layer_dims_, self._theta.dtype
            X = check.check_features(X, "X", dims[0], dtype, "the network has {n} inputs")
            yidx = labels.encode_known(self.classes_, check.check_labels(y, "y", len(X)), "y")
        else:
            dtype = s["dtype"]
            X = self._check_X_fit(X, "X", s)
            classes, yidx = labels.unique_labels(check.check_labels(y, "y", len(X)))
            dims = self._architecture(s, X.shape[1], len(classes))
            self._initialise(np.random.default_rng(self.seed), s["init"], dims, dtype)
            self._set_architecture(dims)
            self.classes_ = classes
        return gradient_check.relative_difference(
            self._theta,
            dims,
            X,
            labels.targets(yidx, dims[-1], dtype),
            activation=self.activation_function,
            keep_prob=self.keep_prob,
            lambd=self.lambd,
            l2=s["l2"],
            masks_seed=self.seed if s["dropout"] else None,
            epsilon=epsilon,
        )

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> str:
        """Write weights, hyperparameters and classes to one ``.npz`` file (see ``numpynet.model_file``).

        Returns the path written (numpy appends ``.npz`` when missing).
        """
        self._check_fitted()
        return model_file.save(
            path,
            NeuralNetwork.get_params(self),
            self.layer_dims_,
            self._theta,
            self.classes_,
            getattr(self, "costs_", []),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuralNetwork":
        """Load a network written by :meth:`save`; it predicts identically."""
        saved = model_file.read(path)
        model = cls(**saved.hyperparameters)
        model._allocate(saved.layer_dims, saved.theta.dtype)
        model._theta[...] = saved.theta
        model.classes_ = saved.classes
        model.costs_ = saved.costs
        model._set_architecture(saved.layer_dims)
        return model
