"""Data loading: every source, the splits, the hash, and every bad-data error."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from omegaconf import OmegaConf

from numpynet.sweeps.errors import UserError
from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.training.data import content_hash, load_dataset


def data_cfg(*overrides: str):
    return compose_config(list(overrides)).data


def file_cfg(path: Path, *overrides: str):
    return data_cfg("data=file", f"data.path={path}", *overrides)


def _proportions(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.array([(y == c).mean() for c in classes])


# ------------------------------------------------------------------ sources
def test_digits_scaled_split_stratified_and_seeded() -> None:
    d = load_dataset(data_cfg())
    assert (d.n_features, d.n_classes, d.image_shape) == (64, 10, (8, 8))
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 1797
    assert len(d.X_test) == 360 and len(d.X_val) == 288  # 20 % test, then 20 % of the rest
    for X in (d.X_train, d.X_val, d.X_test):
        assert X.dtype == np.float64 and X.min() == 0.0 and X.max() == 1.0
    overall = _proportions(np.concatenate([d.y_train, d.y_val, d.y_test]), d.classes)
    for y in (d.y_train, d.y_val, d.y_test):
        np.testing.assert_allclose(_proportions(y, d.classes), overall, atol=0.02)
    assert load_dataset(data_cfg()).digest == d.digest
    assert load_dataset(data_cfg("data.seed=1")).digest != d.digest


def test_breast_cancer_standardised_with_training_statistics_only() -> None:
    d = load_dataset(data_cfg("data=breast_cancer"))
    assert d.n_features == 30 and list(d.classes) == [0, 1]
    assert d.label_name(0) == "malignant" and d.label_name(1) == "benign"
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1, atol=1e-12)
    assert np.abs(d.X_test.mean(axis=0)).max() > 1e-3  # test data was not used for the statistics


def test_catvnoncat_loader_on_the_original_files(catvnoncat_dir: Path) -> None:
    cfg = data_cfg(
        "data=catvnoncat",
        f"data.train_path={catvnoncat_dir / 'train_catvnoncat.h5'}",
        f"data.test_path={catvnoncat_dir / 'test_catvnoncat.h5'}",
    )
    d = load_dataset(cfg)
    assert (len(d.X_train), len(d.X_val), len(d.X_test)) == (167, 42, 50)
    assert d.n_features == 64 * 64 * 3 and d.image_shape == (64, 64, 3)
    assert d.X_train.min() >= 0.0 and d.X_train.max() <= 1.0 and d.X_train.max() > 0.9
    assert list(d.classes) == [0, 1] and d.label_name(1) == "cat" and d.label_name(0) == "non-cat"
    with h5py.File(catvnoncat_dir / "test_catvnoncat.h5") as f:  # the file's test set, untouched and in order
        np.testing.assert_array_equal(d.y_test, f["test_set_y"][()])
        np.testing.assert_array_equal(d.X_test[0], f["test_set_x"][0].reshape(-1) / 255.0)
    cfg.val_fraction = 0.0
    all_train = load_dataset(cfg)
    assert all_train.X_val is None and len(all_train.X_train) == 209


def test_npz_with_own_test_set_and_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        X=rng.random((40, 4, 4)),
        y=np.repeat([3, 7], 20),
        X_test=rng.random((10, 4, 4)),
        y_test=np.repeat([3, 7], 5),
    )
    d = load_dataset(file_cfg(path))
    assert d.n_features == 16 and d.image_shape == (4, 4)
    assert len(d.X_test) == 10 and len(d.X_train) + len(d.X_val) == 40
    assert list(d.classes) == [3, 7]


def test_csv_with_text_labels_and_standardize(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["a,b,kind"] + [f"{rng.normal(5, 2):.6f},{rng.normal():.6f},{'cat' if i % 2 else 'dog'}" for i in range(60)]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    d = load_dataset(file_cfg(path, "data.label_column=kind", "data.standardize=true"))
    assert d.n_features == 2 and list(d.classes) == ["cat", "dog"]
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0, atol=1e-12)
    assert len(d.X_test) == 12  # 20 % held out


def test_content_hash_sees_values_dtypes_and_missing_splits() -> None:
    a = {"X": np.zeros((2, 2)), "y": np.array([0, 1])}
    assert content_hash(a) == content_hash({k: v.copy() for k, v in a.items()})
    assert content_hash(a) != content_hash({"X": np.zeros((2, 2), dtype=np.float32), "y": a["y"]})
    assert content_hash(a) != content_hash({"X": np.eye(2), "y": a["y"]})
    assert content_hash({**a, "X_val": None}) != content_hash({**a, "X_val": np.zeros((0, 2))})


# --------------------------------------------------------------- bad data
def test_missing_path_names_the_key_to_set() -> None:
    with pytest.raises(UserError, match=r"data.train_path is not set; pass data.train_path="):
        load_dataset(data_cfg("data=catvnoncat"))
    with pytest.raises(UserError, match=r"data.path is not set; pass data.path="):
        load_dataset(data_cfg("data=file"))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data.path=.*nope.npz: no such file"):
        load_dataset(file_cfg(tmp_path / "nope.npz"))
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(UserError, match="not a file"):
        load_dataset(file_cfg(tmp_path / "dir.npz"))


def test_corrupt_hdf5_file(tmp_path: Path, catvnoncat_dir: Path) -> None:
    bad = tmp_path / "train.h5"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    cfg = data_cfg(
        "data=catvnoncat", f"data.train_path={bad}", f"data.test_path={catvnoncat_dir / 'test_catvnoncat.h5'}"
    )
    with pytest.raises(UserError, match=r"data.train_path=.*train.h5: cannot read it as HDF5"):
        load_dataset(cfg)


def test_hdf5_without_the_expected_datasets(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((4, 2, 2, 3), dtype=np.uint8)
        f["train_set_y"] = np.array([0, 1, 0, 1])
    cfg = data_cfg("data=catvnoncat", f"data.train_path={path}", f"data.test_path={path}")
    with pytest.raises(UserError, match=r"no dataset 'train_set_x' in the file \(it has: images, train_set_y\)"):
        load_dataset(cfg)


@pytest.mark.parametrize(
    "suffix,write",
    [
        (".npz", lambda p: p.write_bytes(b"PK\x03\x04 truncated")),
        (".csv", lambda p: p.write_bytes(b"")),
    ],
)
def test_unreadable_files(tmp_path: Path, suffix: str, write) -> None:
    path = tmp_path / f"d{suffix}"
    write(path)
    with pytest.raises(UserError, match=rf"cannot read it as {suffix}|cannot read it as CSV"):
        load_dataset(file_cfg(path))


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match=r"unsupported file type '.parquet'; allowed: .npz, .h5, .hdf5, .csv$"):
        load_dataset(file_cfg(path))


def test_npz_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((4, 2)))
    with pytest.raises(UserError, match=r"no array 'y' in the file \(it has: X\)"):
        load_dataset(file_cfg(path))
    np.savez(path, X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), X_test=np.zeros((2, 2)))
    with pytest.raises(UserError, match="only one of X_test, y_test"):
        load_dataset(file_cfg(path))


def test_labels_with_one_class_only(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((10, 2)), y=np.ones(10))
    with pytest.raises(UserError, match=r"the labels have one class only \(\[1.0\]\)"):
        load_dataset(file_cfg(path))


def test_nan_in_features(tmp_path: Path) -> None:
    X = np.ones((20, 3))
    X[4, 1] = np.nan
    X[9, 0] = np.inf
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.arange(20) % 2)
    with pytest.raises(UserError, match=r"contain 2 NaN or infinite values in 2 rows \(first: row 4\)"):
        load_dataset(file_cfg(path))
    csv = tmp_path / "d.csv"
    csv.write_text("a,label\n1,0\n,1\n3,0\n4,1\n")
    with pytest.raises(UserError, match="NaN or infinite"):
        load_dataset(file_cfg(csv))


def test_csv_label_column_and_non_numeric_features(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("a,colour,y\n1,red,0\n2,blue,1\n")
    with pytest.raises(UserError, match=r"data.label_column='label' is not a column of .* \(columns: a, colour, y\)"):
        load_dataset(file_cfg(csv))
    with pytest.raises(UserError, match="not numeric: colour"):
        load_dataset(file_cfg(csv, "data.label_column=y"))


def test_fractions_out_of_range_and_too_small_for_stratification(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data.val_fraction=1.0 is out of range; allowed: 0 <= value < 1"):
        load_dataset(data_cfg("data.val_fraction=1.0"))
    with pytest.raises(UserError, match=r"data.test_fraction=0.0 is out of range; allowed: 0 < value < 1"):
        load_dataset(data_cfg("data.test_fraction=0"))
    with pytest.raises(UserError, match=r"data.test_fraction=0.001 cannot give a stratified split"):
        load_dataset(data_cfg("data.test_fraction=0.001"))


def test_test_labels_unknown_to_training(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((20, 2)), y=np.arange(20) % 2, X_test=np.zeros((3, 2)), y_test=np.array([0, 1, 2]))
    with pytest.raises(UserError, match=r"test labels 2 never occur in the training split"):
        load_dataset(file_cfg(path))


def test_a_long_list_in_an_error_is_cut_with_a_count(tmp_path: Path) -> None:
    """Issue 23 item 11: 200 unseen classes were listed in full on one line."""
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((20, 2)), y=np.arange(20) % 2, X_test=np.zeros((200, 2)), y_test=np.arange(2, 202))
    with pytest.raises(UserError) as caught:
        load_dataset(file_cfg(path))
    assert (
        f"{path}: test labels 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 190 more (200 in all) never occur in the "
        "training split"
    ) in str(caught.value)
    columns = tmp_path / "wide.csv"
    columns.write_text(",".join(f"c{i}" for i in range(60)) + "\n" + ",".join("1" for _ in range(60)) + "\n")
    with pytest.raises(UserError) as caught:
        load_dataset(file_cfg(columns))
    assert str(caught.value).endswith("(columns: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 50 more (60 in all))")


def test_feature_count_mismatch_between_train_and_test(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((20, 2)), y=np.arange(20) % 2, X_test=np.zeros((3, 5)), y_test=np.array([0, 1, 0]))
    with pytest.raises(UserError, match="training data has 2 features but test data has 5"):
        load_dataset(file_cfg(path))


def test_unknown_data_name_from_a_plain_config() -> None:
    with pytest.raises(UserError, match="data.name='mnist' is not known"):
        load_dataset(OmegaConf.create({"name": "mnist", "val_fraction": 0.2, "seed": 0}))


def test_a_sweep_s_trials_share_one_load_and_an_edited_file_is_read_again(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.random((40, 3)), y=np.repeat([0, 1], 20))
    first = load_dataset(file_cfg(path))
    assert load_dataset(file_cfg(path)) is first  # the same config: no second read
    assert load_dataset(file_cfg(path, "data.seed=1")) is not first  # another split
    with pytest.raises(ValueError, match="read-only"):
        first.X_train[0, 0] = 1.0  # shared arrays cannot be changed by one trial for the next
    np.savez(path, X=rng.random((60, 3)), y=np.repeat([0, 1], 30))
    edited = load_dataset(file_cfg(path))
    assert edited is not first and len(edited.X_train) + len(edited.X_val) + len(edited.X_test) == 60


# ------------------------------------------------- bad .npz content (issue 10, item 17)
def test_complex_features_are_refused_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    X = np.ones((10, 2)) + 1j * np.arange(20).reshape(10, 2)
    np.savez(path, X=X, y=np.array([0, 1] * 5))
    with pytest.raises(UserError, match=rf"data.path={path}: X has complex dtype complex128; expected real numbers"):
        load_dataset(file_cfg(path))


def test_empty_features_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((0, 3)), y=np.zeros(0))
    with pytest.raises(UserError, match=rf"data.path={path}: X is empty \(shape \(0, 3\)\)"):
        load_dataset(file_cfg(path))


@pytest.mark.parametrize("content", [b"", b"a,b\n1,2\n", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"])
def test_a_file_that_is_not_an_npz_is_named_without_numpy_s_pickle_advice(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"data.path={path}: not an .npz file") as info:
        load_dataset(file_cfg(path))
    assert "allow_pickle" not in str(info.value)


def test_an_npz_of_python_objects_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.array([[{"a": 1}, 2]] * 4, dtype=object), y=np.array([0, 1, 0, 1]))
    with pytest.raises(UserError, match=rf"data.path={path}: holds an array of Python objects") as info:
        load_dataset(file_cfg(path))
    assert "allow_pickle" not in str(info.value)


@pytest.mark.slow
def test_bad_npz_on_the_command_line_is_one_line_without_traceback(tmp_path: Path) -> None:
    from tests.helpers.commands import run_command

    path = tmp_path / "d.npz"
    path.write_text("not numpy")
    proc = run_command(
        "numpynet-train",
        ["data=file", f"data.path={path}", f"tracking.uri=sqlite:///{tmp_path}/m.db"],
        tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [
        f"numpynet-train: data.path={path}: not an .npz file (no zip header); "
        "expected a zip of .npy arrays as written by numpy.savez(path, X=..., y=...)"
    ], proc.stderr


def test_a_worker_adopts_the_parent_s_datasets_and_reads_nothing_again(tmp_path: Path, monkeypatch) -> None:
    """What a sweep's parent loaded reaches its spawned workers (pickled, as ``spawn`` sends it): there
    ``load_dataset`` answers from it without reading or splitting, the arrays stay read-only, and a file
    edited since is read again (its size and mtime are part of the key)."""
    from numpynet.sweeps.training import data

    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.repeat([0, 1], 30)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    cfg = compose_config(["data=file", f"data.path={tmp_path / 'd.npz'}"]).data
    monkeypatch.setattr(data, "_CACHE", {})
    parent = data.load_dataset(cfg)
    sent = data.save_loaded_datasets(tmp_path)  # the file a spawned worker receives

    monkeypatch.setattr(data, "_CACHE", {})  # the worker's own, empty cache
    loads = []
    real = data._load
    monkeypatch.setattr(data, "_load", lambda c: loads.append(c) or real(c))
    data.adopt_datasets_from(sent)
    adopted = data.load_dataset(cfg)
    assert loads == [] and adopted.digest == parent.digest
    assert not adopted.X_train.flags.writeable and not adopted.y_test.flags.writeable
    np.savez(tmp_path / "d.npz", X=X[:50], y=y[:50])  # edited meanwhile: another key, read afresh
    assert data.load_dataset(cfg).digest != parent.digest and len(loads) == 1


# ------------------------------------------------------------------ augmentation
def _colour_images(tmp_path: Path) -> Path:
    """30 training images 3 high, 5 wide, 2 channels (no two alike) and their own test set."""
    rng = np.random.default_rng(1)
    path = tmp_path / "img.npz"
    np.savez(
        path,
        X=rng.random((30, 3, 5, 2)),
        y=np.repeat([0, 1], 15),
        X_test=rng.random((6, 3, 5, 2)),
        y_test=np.repeat([0, 1], 3),
    )
    return path


def test_hflip_adds_the_left_right_mirror_of_every_training_image_and_nothing_else(tmp_path: Path) -> None:
    path = _colour_images(tmp_path)
    plain = load_dataset(file_cfg(path))
    d = load_dataset(file_cfg(path, "data.augment=hflip"))
    assert d.digest == plain.digest and d.n_features == 30  # the data as loaded is the same
    X, y = d.training_arrays()
    n = len(d.X_train)
    assert X.shape == (2 * n, 30) and np.array_equal(y, np.concatenate([d.y_train, d.y_train]))
    assert np.array_equal(X[:n], d.X_train)
    for i in range(n):  # column j of the mirror is column width-1-j of the image, every row and channel
        image, mirror = d.X_train[i].reshape(3, 5, 2), X[n + i].reshape(3, 5, 2)
        for j in range(5):
            assert np.array_equal(mirror[:, j, :], image[:, 4 - j, :])
    assert plain.training_arrays()[0] is plain.X_train  # without augment: the split itself, no copy
    assert "(+%d mirrored)" % n in d.summary()


def test_hflip_in_folds_mirrors_only_the_fold_s_training_rows(tmp_path: Path) -> None:
    d = load_dataset(file_cfg(_colour_images(tmp_path), "data.augment=hflip", "data.folds=3"))
    for train, val in d.folds:
        X, y = d.training_arrays(train)
        assert len(X) == 2 * len(train)
        held_out = {d.X_train[v].tobytes() for v in val}
        held_out |= {d.X_train[v].reshape(3, 5, 2)[:, ::-1].tobytes() for v in val}
        assert not held_out & {row.tobytes() for row in X}  # no validation image, nor its mirror, is trained on
        assert np.array_equal(y, np.concatenate([d.y_train[train], d.y_train[train]]))


def test_augment_values_and_data_it_cannot_mirror_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data.augment='rotate' is invalid: null, or hflip"):
        load_dataset(file_cfg(_colour_images(tmp_path), "data.augment=rotate"))
    with pytest.raises(UserError, match=r"data.augment=hflip needs images, and data=breast_cancer holds feature"):
        load_dataset(data_cfg("data=breast_cancer", "data.augment=hflip"))


# ------------------------------------------------------------------ HDF5 files (data=file)
def _write_h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_an_hdf5_file_loads_the_same_dataset_as_the_same_npz(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(2)
    arrays = {
        "X": rng.random((30, 3, 5, 2)),
        "y": np.repeat([0, 1], 15),
        "X_test": rng.random((6, 3, 5, 2)),
        "y_test": np.repeat([0, 1], 3),
    }
    np.savez(tmp_path / "d.npz", **arrays)
    from_npz = load_dataset(file_cfg(tmp_path / "d.npz", "data.augment=hflip"))
    from_h5 = load_dataset(file_cfg(_write_h5(tmp_path / f"d{suffix}", **arrays), "data.augment=hflip"))
    assert from_h5.digest == from_npz.digest and from_h5.image_shape == (3, 5, 2)
    assert np.array_equal(from_h5.X_test, arrays["X_test"].reshape(6, -1))  # the file's own test set, in order
    assert np.array_equal(from_h5.training_arrays()[0], from_npz.training_arrays()[0])  # mirrored alike
    flat = {"X": rng.random((40, 3)), "y": np.repeat([2, 5], 20).reshape(40, 1)}  # labels as a column
    np.savez(tmp_path / "flat.npz", **flat)
    from_h5 = load_dataset(file_cfg(_write_h5(tmp_path / f"flat{suffix}", **flat)))
    assert from_h5.digest == load_dataset(file_cfg(tmp_path / "flat.npz")).digest and from_h5.image_shape is None


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "not an HDF5 file (no HDF5 signature); expected datasets X, y as written by h5py"),
        (b"X,y\n1,0\n", "not an HDF5 file (no HDF5 signature); expected datasets X, y as written by h5py"),
        (b"\x89HDF\r\n\x1a\n" + bytes(8) + b"truncated", "cannot read it as HDF5 ("),
    ],
)
def test_a_file_that_is_not_hdf5_is_named(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "d.h5"
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"^data.path={path}: {re.escape(reason)}"):
        load_dataset(file_cfg(path))


def test_hdf5_missing_datasets_groups_and_non_numeric_data_are_named(tmp_path: Path) -> None:
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["labels"] = X, y
        f.create_group("extra")
    with pytest.raises(
        UserError,
        match=rf"^data.path={path}: no dataset 'y' in the file \(it has: X, extra/, "
        r"labels\); expected X, y and optionally X_test, y_test$",
    ):
        load_dataset(file_cfg(path))
    with h5py.File(path, "w") as f:
        f["X"] = X
        f.create_group("y")["labels"] = y
    with pytest.raises(UserError, match=rf"^data.path={path}: 'y' is an HDF5 group, not a dataset; expected X, y"):
        load_dataset(file_cfg(path))
    cases = [
        ("y", np.array([b"cat", b"dog"] * 2), None, "strings (dtype |S3)"),
        ("X", np.array([["a", "b"]] * 4, dtype=object), h5py.string_dtype(), "strings (dtype object)"),
        (
            "y",
            np.array([np.arange(1), np.arange(2)] * 2, dtype=object),
            h5py.vlen_dtype(np.int64),
            "Python objects or variable-length data (dtype object)",
        ),
    ]
    for name, value, dtype, what in cases:
        with h5py.File(path, "w") as f:
            f["X"], f["y"] = X, y
            del f[name]
            f.create_dataset(name, data=value, dtype=dtype)
        with pytest.raises(
            UserError,
            match=rf"^data.path={path}: dataset '{name}' holds {re.escape(what)}; "
            r"expected numbers \(store text labels as integer codes\)$",
        ):
            load_dataset(file_cfg(path))


def test_npz_and_hdf5_share_the_layout_checks(tmp_path: Path) -> None:
    X, y = np.zeros((4, 3, 3)), np.array([0, 1, 0, 1])
    bad = {
        "has only one of X_test, y_test; give both or neither": {"X": X, "y": y, "y_test": y},
        r"y has shape \(4, 2\) for the 4 rows of X; expected one label per row, shape \(4,\)": {
            "X": X,
            "y": np.zeros((4, 2)),
        },
        r"y_test has shape \(3,\) for the 4 rows of X_test; expected one label per row": {
            "X": X,
            "y": y,
            "X_test": X,
            "y_test": y[:3],
        },
        r"X holds rows of shape \(3, 3\) but X_test of shape \(9,\); both must hold images of one size": {
            "X": X,
            "y": y,
            "X_test": X.reshape(4, 9),
            "y_test": y,
        },
    }
    for message, arrays in bad.items():
        np.savez(tmp_path / "d.npz", **arrays)
        for path in (tmp_path / "d.npz", _write_h5(tmp_path / "d.h5", **arrays)):
            with pytest.raises(UserError, match=rf"^data.path={path}: {message}"):
                load_dataset(file_cfg(path))


# ------------------------------------------------------------------ class balance
def _imbalanced(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    path = tmp_path / "skewed.npz"
    np.savez(path, X=rng.normal(size=(100, 3)) + y[:, None], y=y)
    return path


def test_oversampling_gives_every_class_the_largest_count_in_training_only(tmp_path: Path) -> None:
    d = load_dataset(file_cfg(_imbalanced(tmp_path), "data.balance=oversample", "data.val_fraction=0.25"))
    X, y = d.training_arrays()
    counts = np.unique(y, return_counts=True)[1]
    assert counts.tolist() == [int(np.sum(d.y_train == 0))] * 3
    # the originals first, then copies of existing rows: nothing new, nothing from validation or test
    np.testing.assert_array_equal(X[: len(d.X_train)], d.X_train)
    originals = {row.tobytes() for row in d.X_train}
    assert all(row.tobytes() in originals for row in X[len(d.X_train) :])
    assert np.unique(d.y_val, return_counts=True)[1].tolist() != counts.tolist()  # validation as it was
    assert np.array_equal(d.training_arrays()[0], X)  # deterministic


def test_oversampling_a_fold_uses_that_fold_s_rows_only(tmp_path: Path) -> None:
    d = load_dataset(file_cfg(_imbalanced(tmp_path), "data.balance=oversample", "data.folds=3"))
    train_rows, val_rows = d.folds[0]
    X, y = d.training_arrays(train_rows)
    assert len(set(np.unique(y, return_counts=True)[1].tolist())) == 1
    held_out = {row.tobytes() for row in d.X_train[val_rows]}
    assert not any(row.tobytes() in held_out for row in X)


def test_an_unknown_balance_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^data.balance='smote' is invalid: null, or oversample [^\n]*$"):
        load_dataset(file_cfg(_imbalanced(tmp_path), "data.balance=smote"))
