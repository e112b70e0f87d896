"""A network written and read back: the model file (``numpynet.model_file``) and pickling.

The files in ``fixtures/`` were written by ``NeuralNetwork.save`` of main at
3e1dbc6, before the core was split by concern (a binary network with string
labels, tanh, adam and L2; a float32 multiclass one with ``layer_dims``,
momentum, L2 + dropout and decay), together with the weights, probabilities
and predictions that code read from them (``old_models_expected.npz``).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from numpynet import NeuralNetwork
from tests.helpers.core import binary_data, multiclass_data

FIXTURES = Path(__file__).parent / "fixtures"
OLD_MODELS = {"binary": np.float64, "multiclass_float32": np.float32}


def _assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.classes_, b.classes_)


def test_save_load_round_trip_predicts_identically(tmp_path):
    X, y = binary_data()
    net = NeuralNetwork(
        [4, 6, 3, 1],
        optimizer="adam",
        learning_rate=0.01,
        regularization="l2",
        lambd=0.3,
        epoch=10,
        activation_function="tanh",
    ).fit(X, y)
    written = net.save(tmp_path / "model.npz")
    loaded = NeuralNetwork.load(written)
    _assert_same_predictions(net, loaded, X)
    assert loaded.get_params() == net.get_params()
    assert loaded.costs_ == net.costs_
    for w, v in zip(net.coefs_, loaded.coefs_, strict=True):
        np.testing.assert_array_equal(w, v)


def test_save_load_keeps_string_classes_and_float32(tmp_path):
    X, y = multiclass_data()
    labels = np.array(["red", "green", "blue"])[y]
    net = NeuralNetwork([4, 5, 3], dtype="float32", optimizer="adam", learning_rate=0.01, epoch=5).fit(X, labels)
    loaded = NeuralNetwork.load(net.save(tmp_path / "m.npz"))
    _assert_same_predictions(net, loaded, X)
    assert loaded.coefs_[0].dtype == np.float32
    assert set(loaded.predict(X)) <= {"red", "green", "blue"}


def test_load_accepts_the_path_given_to_save(tmp_path, monkeypatch):
    """save('model') writes model.npz; load('model') must find it again."""
    monkeypatch.chdir(tmp_path)  # relative paths: nothing lands in the working directory
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1], epoch=2).fit(X, y)
    path = "model"
    net.save(path)
    _assert_same_predictions(net, NeuralNetwork.load(path), X)


def test_save_accepts_numpy_scalar_hyperparameters(tmp_path):
    """Values from numpy grids (np.int64 seed, batch size...) pass validation, so save must take them."""
    X, y = binary_data()
    net = NeuralNetwork(
        [4, 3, 1], seed=np.int64(3), mini_batch_size=np.int64(16), learning_rate=np.float32(0.01), epoch=2
    ).fit(X, y)
    loaded = NeuralNetwork.load(net.save(tmp_path / "m.npz"))
    _assert_same_predictions(net, loaded, X)
    assert loaded.seed == 3 and loaded.mini_batch_size == 16


def test_save_load_with_object_dtype_string_labels(tmp_path):
    """Labels from pandas or lists of str often arrive as dtype=object arrays."""
    X, y = binary_data()
    labels = np.array(["cat" if v else "non-cat" for v in y], dtype=object)
    net = NeuralNetwork([4, 3, 1], epoch=2).fit(X, labels)
    loaded = NeuralNetwork.load(net.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))


def _rewrite(path, **changes):
    """The .npz file at path with some arrays replaced (None: removed)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


@pytest.fixture
def saved(tmp_path):
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1], epoch=2).fit(X, y)
    return net, net.save(tmp_path / "model.npz")


@pytest.mark.parametrize("key", ["format_version", "hyperparameters", "theta", "classes"])
def test_load_names_a_missing_key(saved, key):
    _, path = saved
    _rewrite(path, **{key: None})
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path} is not a numpynet model file: missing ['{key}']"


def test_load_lists_every_missing_key(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, theta=np.zeros(3))
    with pytest.raises(ValueError, match=r"missing \['classes', 'format_version', 'hyperparameters'\]$"):
        NeuralNetwork.load(path)


def test_load_refuses_a_newer_format_and_reads_the_current_one(saved):
    net, path = saved
    X, _ = binary_data()
    np.testing.assert_array_equal(
        NeuralNetwork.load(_rewrite(path, format_version=np.int64(2))).predict_proba(X), net.predict_proba(X)
    )
    _rewrite(path, format_version=np.int64(3))
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path} has model format 3; this numpynet reads up to 2"


@pytest.mark.parametrize("change", [+1, -1])
def test_load_refuses_parameters_that_do_not_fit_the_sizes(saved, change):
    net, path = saved
    size = net.coefs_[0].size + net.coefs_[1].size + 3 + 1  # [4, 3, 1]: 15 weights, 4 biases
    theta = np.zeros(size + change)
    _rewrite(path, theta=theta)
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path}: {size + change} parameters do not fit layer_dims [4, 3, 1]"


def test_load_restores_every_fitted_attribute(saved):
    net, path = saved
    loaded = NeuralNetwork.load(path)
    for name in ["layer_dims_", "n_features_in_", "n_layers_", "n_outputs_", "out_activation_", "costs_"]:
        assert getattr(loaded, name) == getattr(net, name), name
    assert (loaded.n_layers_, loaded.n_outputs_, loaded.out_activation_) == (3, 1, "logistic")


def test_save_returns_the_path_it_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1], epoch=1).fit(X, y)
    for given, written in [
        ("a", "a.npz"),
        ("b.npz", "b.npz"),
        ("c.v2", "c.v2.npz"),
        (tmp_path / "d", str(tmp_path / "d.npz")),
    ]:
        assert net.save(given) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.v2.npz", "d.npz"]


def test_load_takes_a_file_by_its_exact_name_first(tmp_path):
    """A model file renamed without its extension still loads; a missing .npz path is not
    looked for under another name."""
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1], epoch=1).fit(X, y)
    renamed = tmp_path / "model"
    os.replace(net.save(tmp_path / "model.npz"), renamed)
    np.testing.assert_array_equal(NeuralNetwork.load(renamed).predict_proba(X), net.predict_proba(X))
    with pytest.raises(FileNotFoundError) as info:
        NeuralNetwork.load(tmp_path / "missing.npz")
    assert str(tmp_path / "missing.npz") in str(info.value) and "missing.npz.npz" not in str(info.value)


def test_load_never_unpickles(saved):
    """allow_pickle=False: a file with an object array (which loading would unpickle,
    running code) is refused."""
    _, path = saved
    _rewrite(path, classes=np.array([{"not": "a label"}, None], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        NeuralNetwork.load(path)


def test_save_load_of_an_integer_hidden_size_and_of_narrow_integer_classes(tmp_path):
    X, y = binary_data()
    net = NeuralNetwork(hidden_layer_sizes=3, epoch=2).fit(X, y.astype(np.int32))
    loaded = NeuralNetwork.load(net.save(tmp_path / "m"))
    assert loaded.hidden_layer_sizes == 3 and loaded.layer_dims_ == [4, 3, 1]
    assert loaded.classes_.dtype == np.int32 and loaded.predict(X).dtype == np.int32
    _assert_same_predictions(net, loaded, X)


def test_a_network_initialised_by_grad_check_saves_without_a_history(tmp_path):
    X, y = binary_data()
    net = NeuralNetwork([4, 3, 1])
    net.grad_check(X, y)
    loaded = NeuralNetwork.load(net.save(tmp_path / "m"))
    assert loaded.costs_ == []
    _assert_same_predictions(net, loaded, X)


def test_pickle_round_trip_predicts_identically_and_owns_its_parameters():
    X, y = multiclass_data()
    net = NeuralNetwork([4, 6, 3], optimizer="rmsprop", learning_rate=0.01, epoch=5).fit(X, y)
    assert not {"coefs_", "intercepts_", "_gW", "_gb"} & set(net.__getstate__())  # views are rebuilt, not pickled
    copy = pickle.loads(pickle.dumps(net))
    _assert_same_predictions(net, copy, X)
    assert set(vars(copy)) == set(vars(net))
    before = net.predict_proba(X)
    copy.coefs_[0][...] = 0.0  # the copy's views point into its own parameters
    np.testing.assert_array_equal(net.predict_proba(X), before)
    assert not np.array_equal(copy.predict_proba(X), before)


def test_an_unfitted_network_refuses_to_predict_or_save(tmp_path):
    net = NeuralNetwork([4, 3, 1])
    with pytest.raises(RuntimeError, match="not fitted"):
        net.predict(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="not fitted"):
        net.save(tmp_path / "m.npz")


def test_save_refuses_a_hyperparameter_json_cannot_hold(tmp_path):
    X, y = binary_data()
    flag = object()
    net = NeuralNetwork([4, 3, 1], epoch=1, print_cost=np.bool_(False)).fit(X, y)
    assert NeuralNetwork.load(net.save(tmp_path / "ok")).print_cost is False  # numpy scalars are fine
    net.set_params(print_cost=flag)
    with pytest.raises(TypeError) as info:
        net.save(tmp_path / "bad")
    assert str(info.value) == f"hyperparameter value {flag!r} of type object cannot be saved"


def test_an_unfitted_network_pickles_and_stays_unfitted():
    net = pickle.loads(pickle.dumps(NeuralNetwork([4, 3, 1], learning_rate=0.2)))
    assert net.get_params() == NeuralNetwork([4, 3, 1], learning_rate=0.2).get_params()
    assert not net.__sklearn_is_fitted__()


# ------------------------------------------------- files written by earlier code


@pytest.mark.parametrize("name", list(OLD_MODELS))
def test_a_file_written_before_the_split_loads_with_its_weights_and_predictions(name):
    with np.load(FIXTURES / "old_models_expected.npz") as data:
        expected = {k: data[k] for k in data.files}
    net = NeuralNetwork.load(FIXTURES / f"model_v2_{name}.npz")
    assert net._theta.dtype == OLD_MODELS[name] and net.n_layers_ == len(net.coefs_) + 1
    for layer, (W, b) in enumerate(zip(net.coefs_, net.intercepts_, strict=True)):
        np.testing.assert_array_equal(W, expected[f"{name}_coef_{layer}"], strict=True)
        np.testing.assert_array_equal(b, expected[f"{name}_intercept_{layer}"], strict=True)
    X = expected["X"]
    np.testing.assert_array_equal(net.predict(X), expected[f"{name}_predict"], strict=True)
    rtol = 1e-12 if OLD_MODELS[name] is np.float64 else 1e-6  # another machine's BLAS may round differently
    np.testing.assert_allclose(net.predict_proba(X), expected[f"{name}_proba"], rtol=rtol, atol=0, strict=True)


@pytest.mark.parametrize("name", list(OLD_MODELS))
def test_a_file_written_before_the_split_is_written_again_member_for_member(name, tmp_path):
    """The format is unchanged: loading and saving again gives the same arrays, the same JSON text."""
    old = FIXTURES / f"model_v2_{name}.npz"
    again = NeuralNetwork.load(old).save(tmp_path / "again.npz")
    with np.load(old) as before, np.load(again) as after:
        assert before.files == after.files
        for key in before.files:
            np.testing.assert_array_equal(after[key], before[key], strict=True, err_msg=key)


def test_a_pickle_written_before_the_split_unpickles_and_predicts_as_it_did():
    """``model_v2_binary.pkl``: the binary fixture loaded, then pickled, by the same earlier code."""
    with np.load(FIXTURES / "old_models_expected.npz") as data:
        X, proba = data["X"], data["binary_proba"]
    with open(FIXTURES / "model_v2_binary.pkl", "rb") as f:
        net = pickle.load(f)
    np.testing.assert_allclose(net.predict_proba(X), proba, rtol=1e-12, atol=0, strict=True)
    assert set(vars(net)) == set(vars(NeuralNetwork.load(FIXTURES / "model_v2_binary.npz")))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(net)).predict_proba(X), net.predict_proba(X))


# ------------------------------------------- sizes checked before any allocation


def test_load_refuses_layer_sizes_its_parameters_cannot_fill_before_allocating_them(saved, monkeypatch):
    """A crafted file whose layer_dims ask for 149 GiB of parameters while it holds 19: refused
    with the sizes named, and nothing of the asked size is ever allocated."""
    _, path = saved
    _rewrite(path, layer_dims=np.array([4, 100_000, 200_000, 1], dtype=np.int64))
    zeros, empty = np.zeros, np.empty

    def small(alloc):
        def guarded(shape, *args, **kwargs):
            assert np.prod(shape, dtype=object) < 10**6, f"allocated {shape}"
            return alloc(shape, *args, **kwargs)

        return guarded

    monkeypatch.setattr(np, "zeros", small(zeros))
    monkeypatch.setattr(np, "empty", small(empty))
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path}: 19 parameters do not fit layer_dims [4, 100000, 200000, 1]"


def _replace_member(path, member: str, data: bytes) -> None:
    """Rewrite the .npz at ``path`` with ``member``'s bytes replaced by ``data``."""
    with zipfile.ZipFile(path) as old:
        members = {name: old.read(name) for name in old.namelist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as new:
        for name, blob in members.items():
            new.writestr(name, blob)


def test_load_reads_the_parameter_count_from_the_array_header_not_the_data(saved):
    """A theta member whose header declares 2e10 values (and holds none) is refused from the
    header: reading its data would allocate 149 GiB first."""
    _, path = saved
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (20_000_000_000,)})
    _replace_member(path, "theta.npy", header.getvalue())
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path}: 20000000000 parameters do not fit layer_dims [4, 3, 1]"


def test_load_refuses_a_header_that_claims_more_than_the_file_holds(saved):
    """layer_dims and the weights' header agree on 8 TiB in a file of a few hundred bytes: the
    count check passes, so the bytes the file can hold decide, before reading allocates them."""
    _, path = saved
    dims = [2**20, 2**20, 1]
    _rewrite(path, layer_dims=np.asarray(dims, dtype=np.int64))
    need = dims[0] * dims[1] + dims[1] * dims[2] + dims[1] + dims[2]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (need,)})
    header.write(np.zeros(4).tobytes())
    _replace_member(path, "theta.npy", header.getvalue())
    with pytest.raises(ValueError) as info:
        NeuralNetwork.load(path)
    assert str(info.value) == f"{path}: its theta claims {need * 8} bytes, more than the file holds"
