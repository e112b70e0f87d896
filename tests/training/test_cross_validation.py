"""Cross-validated runs: the folds, the lockstep of K fold models, and their record."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from numpynet import TrainingDiverged
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.training.cross_validation import (
    fit_folds,
    fit_in_lockstep,
    fold_metric,
    fold_networks,
    summary_metrics,
)
from numpynet.sweeps.training.data import load_dataset, stratified_folds
from numpynet.sweeps.training.network_from_config import build_network

FAST = ["train.epoch=7", "network.hidden=[12]", "data.folds=4"]


def _dataset(*overrides: str):
    return load_dataset(compose_config([*FAST, *overrides]).data)


# ------------------------------------------------------------------- folds
def test_folds_are_stratified_disjoint_and_cover_the_training_data() -> None:
    y = np.array([0] * 30 + [1] * 12 + [2] * 6)
    folds = stratified_folds(y, 3, seed=5)
    vals = [val for _, val in folds]
    assert sorted(np.concatenate(vals).tolist()) == list(range(len(y)))  # every sample validated exactly once
    for train, val in folds:
        assert not set(train) & set(val)
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(y)))
        # each class is split in proportion: 30/3, 12/3, 6/3 per validation fold
        assert np.bincount(y[val], minlength=3).tolist() == [10, 4, 2]
    assert [v.tolist() for _, v in stratified_folds(y, 3, seed=5)] == [v.tolist() for v in vals]  # seeded
    assert [v.tolist() for _, v in stratified_folds(y, 3, seed=6)] != [v.tolist() for v in vals]


def test_a_dataset_with_folds_has_no_holdout_and_keeps_its_test_split() -> None:
    holdout = load_dataset(compose_config(["data.val_fraction=0"]).data)
    cv = _dataset()
    assert cv.X_val is None and len(cv.folds) == 4
    np.testing.assert_array_equal(cv.X_train, holdout.X_train)  # the whole training split
    np.testing.assert_array_equal(cv.X_test, holdout.X_test)


@pytest.mark.parametrize(
    "value, fragment",
    [
        (1, "data.folds=1 is invalid: an integer >= 2"),
        (500, "data.folds=500 is too many: the rarest class has only"),
    ],
)
def test_bad_fold_counts_name_the_key(value, fragment) -> None:
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        load_dataset(compose_config([f"data.folds={value}"]).data)


# ---------------------------------------------------------------- lockstep
def _fold_networks(dataset, cfg):
    return fold_networks(cfg, dataset)


def test_lockstep_folds_equal_separate_fits_bit_for_bit_and_report_their_mean() -> None:
    cfg = compose_config([*FAST, "train.regularization=dropout", "train.keep_prob=0.8"])
    dataset = load_dataset(cfg.data)
    seen: list[tuple[int, dict]] = []
    networks = _fold_networks(dataset, cfg)
    fit_folds(networks, dataset, lambda epoch, metrics: seen.append((epoch, metrics)))

    X, y = dataset.X_train, dataset.y_train
    separate = []
    for train, val in dataset.folds:  # the same folds, one plain fit after another
        net = build_network(cfg, dataset.n_features, dataset.n_classes)
        separate.append(net.fit(X[train], y[train], X[val], y[val]))
    for a, b in zip(networks, separate, strict=True):
        assert a.costs_ == b.costs_ and a.val_accuracies_ == b.val_accuracies_
        for wa, wb in zip(a.coefs_, b.coefs_, strict=True):
            np.testing.assert_array_equal(wa, wb)

    assert [epoch for epoch, _ in seen] == list(range(7))
    for epoch, metrics in seen:
        per_fold = [net.val_accuracies_[epoch] for net in separate]
        assert metrics["val_accuracy"] == pytest.approx(np.mean(per_fold), abs=1e-15)
        assert metrics["val_accuracy_std"] == pytest.approx(np.std(per_fold), abs=1e-15)
        assert [metrics[fold_metric(k, "val_accuracy")] for k in range(4)] == per_fold
        assert metrics["train_cost"] == pytest.approx(np.mean([n.costs_[epoch] for n in separate]), abs=1e-15)
    final = summary_metrics(networks)
    assert final["val_accuracy"] == seen[-1][1]["val_accuracy"] and final["folds"] == 4


def test_mirrored_folds_train_on_their_mirrored_training_rows() -> None:
    """data.augment=hflip reaches every fold model: each equals a plain fit on its fold's mirrored rows."""
    cfg = compose_config([*FAST, "data.augment=hflip"])
    dataset = load_dataset(cfg.data)
    networks = _fold_networks(dataset, cfg)
    fit_folds(networks, dataset)
    X, y = dataset.X_train, dataset.y_train
    for net, (train, val) in zip(networks, dataset.folds, strict=True):
        mirrored = build_network(cfg, dataset.n_features, dataset.n_classes).fit(
            *dataset.training_arrays(train), X[val], y[val]
        )
        plain = build_network(cfg, dataset.n_features, dataset.n_classes).fit(X[train], y[train], X[val], y[val])
        assert net.costs_ == mirrored.costs_ and net.val_accuracies_ == mirrored.val_accuracies_
        assert net.costs_ != plain.costs_


def test_seed_per_fold_seeds_fold_k_with_seed_plus_k_and_equals_those_separate_fits() -> None:
    cfg = compose_config([*FAST, "train.seed=5", "train.seed_per_fold=true"])
    dataset = load_dataset(cfg.data)
    networks = _fold_networks(dataset, cfg)
    assert [net.seed for net in networks] == [5, 6, 7, 8]
    fit_folds(networks, dataset)
    X, y = dataset.X_train, dataset.y_train
    for k, (net, (train, val)) in enumerate(zip(networks, dataset.folds, strict=True)):
        alone = build_network(compose_config([*FAST, f"train.seed={5 + k}"]), dataset.n_features, dataset.n_classes)
        alone.fit(X[train], y[train], X[val], y[val])
        assert net.costs_ == alone.costs_ and net.val_accuracies_ == alone.val_accuracies_
    shared = _fold_networks(dataset, compose_config([*FAST, "train.seed=5"]))
    assert [net.seed for net in shared] == [5, 5, 5, 5]


def test_only_one_fold_computes_at_a_time_in_a_fixed_order() -> None:
    order, busy, overlap = [], threading.Lock(), []

    def fit_of(k):
        def fit(on_epoch):
            for epoch in range(3):
                if not busy.acquire(blocking=False):
                    overlap.append((k, epoch))
                else:
                    order.append((epoch, k))
                    busy.release()
                on_epoch(epoch, {"val_accuracy": float(k)})

        return fit

    fit_in_lockstep([fit_of(k) for k in range(3)], lambda epoch, per_fold: None)
    assert not overlap
    assert order == [(e, k) for e in range(3) for k in range(3)]


class Pruned(Exception):
    pass


def test_stopping_on_the_mean_stops_every_fold_at_that_epoch() -> None:
    cfg = compose_config(FAST)
    dataset = load_dataset(cfg.data)
    networks = _fold_networks(dataset, cfg)

    def prune_at_2(epoch, metrics):
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        fit_folds(networks, dataset, prune_at_2)
    assert [len(n.costs_) for n in networks] == [3, 3, 3, 3]
    assert threading.active_count() == 1 or not any(
        t.name.startswith("numpynet-fold") and t.is_alive() for t in threading.enumerate()
    )


def test_a_fault_in_one_fold_fails_the_run_and_stops_the_others() -> None:
    calls = []

    def healthy(k):
        def fit(on_epoch):
            for epoch in range(50):
                calls.append(k)
                on_epoch(epoch, {"val_accuracy": 0.5})

        return fit

    def diverges(on_epoch):
        on_epoch(0, {"val_accuracy": 0.5})
        raise TrainingDiverged(1, 0.7)

    reported = []
    with pytest.raises(TrainingDiverged):
        fit_in_lockstep([healthy(0), diverges, healthy(2)], lambda e, m: reported.append(e))
    assert reported == [0]  # epoch 1 was never reported: fold 1 failed in it
    assert calls.count(0) <= 2 and calls.count(2) <= 2  # the others stopped at their next boundary
    assert not any(t.name.startswith("numpynet-fold") and t.is_alive() for t in threading.enumerate())


def test_folds_with_different_epoch_counts_are_an_error_not_a_silent_mean() -> None:
    def fit_of(n):
        return lambda on_epoch: [on_epoch(e, {"val_accuracy": 1.0}) for e in range(n)]

    with pytest.raises(RuntimeError, match="fell out of step at epoch 2"):
        fit_in_lockstep([fit_of(3), fit_of(2)], lambda e, m: None)


def test_a_value_the_core_rejects_fails_the_cross_validated_run_with_its_message() -> None:
    cfg = compose_config([*FAST, "train.regularization=dropout", "train.keep_prob=0"])
    dataset = load_dataset(cfg.data)
    with pytest.raises(ValueError, match="keep_prob"):
        fit_folds(_fold_networks(dataset, cfg), dataset)
    assert not any(t.name.startswith("numpynet-fold") and t.is_alive() for t in threading.enumerate())
