"""The evidence behind ``sweep=small``: refit rules, objectives and class imbalance, on synthetic data only.

    nice -n 10 python -m benchmarks.small_protocol [--seeds 5] [--configs 6] [--spaces small gd] [--out FILE]

Every development set is drawn from a scikit-learn generator
(``make_classification``, ``make_moons``) with a fixed ``random_state``: a
few hundred rows to search on, and 2000 more rows of the same generator as
a test set large enough that a rule's test score is not the test split's
noise. No real dataset is read (the benchmark that judges ``sweep=small``
must stay unseen).

For each development set and each space (``sweep=small``'s, Adam; one like
the cat study's, plain gradient descent through [20, 7, 5]) this emulates
the study: ``--configs`` configurations drawn at random from the space, each
5-fold cross-validated (stratified, fold k's model seeded ``1 + k``); the
one with the best mean-over-folds balanced accuracy at its best epoch is
"chosen", then deployed over ``--seeds`` robustness seeds under each rule:

- ``peak``: one model on all the training rows, for the epochs at which the
  mean fold curve peaked (plus one): the rule before issue 22;
- ``pooled``: the same, for the epochs at which the curve pooled over the
  folds and ``POOLED_SEED_SETS`` seed sets of the chosen configuration,
  smoothed over 5 epochs, peaks;
- ``full``: the same, for the trial's own epochs;
- ``ensemble``: no refit: the K fold models (seeded ``s + k``) stopped at the
  peak epoch, their class probabilities averaged.

Each model is trained once for the full epochs and its test predictions are
recorded after every epoch (a run stopped at epoch E is the first E epochs
of the longer one: nothing in training depends on the total), so the rules
cost one training per seed. A model that predicts one class for every test
row is counted as *collapsed*.

The same trainings give the objective comparison (every configuration's
cross-validated score under three objectives against its refit's test
balanced accuracy) and the imbalance comparison (no correction; class
weights in training, emulated by oversampling each class to the size of
the largest, since the core takes no sample weights; a decision threshold
chosen on the pooled out-of-fold probabilities).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from numpynet import NeuralNetwork

EPOCHS = 100
FOLDS = 5
TEST_ROWS = 2000
POOLED_SEED_SETS = 3  # the pooled rule's curve: K folds x this many seed sets of the chosen configuration


@dataclass(frozen=True)
class DevSet:
    name: str
    make: Callable[[int], tuple[np.ndarray, np.ndarray]]  # total rows -> X, y
    rows: int


def _classification(**kw) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import make_classification

    return lambda n: make_classification(n_samples=n, random_state=7, **kw)


def _moons(noise: float, extra: int) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    def make(n: int):
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=n, noise=noise, random_state=7)
        rng = np.random.default_rng(7)
        return np.hstack([X, rng.normal(size=(n, extra))]), y

    return make


DEV_SETS = [
    DevSet(
        "bin-300x20-balanced",
        _classification(n_features=20, n_informative=5, n_redundant=2, flip_y=0.05, class_sep=1.0),
        300,
    ),
    DevSet(
        "bin-300x20-80/20-noisy",
        _classification(n_features=20, n_informative=4, n_redundant=2, flip_y=0.10, class_sep=0.8, weights=[0.8, 0.2]),
        300,
    ),
    DevSet(
        "bin-400x30-90/10",
        _classification(n_features=30, n_informative=3, n_redundant=0, flip_y=0.02, class_sep=1.2, weights=[0.9, 0.1]),
        400,
    ),
    DevSet(
        "bin-150x20-hard",
        _classification(n_features=20, n_informative=2, n_redundant=2, flip_y=0.20, class_sep=0.6),
        150,
    ),
    DevSet(
        "3class-200x10",
        _classification(
            n_features=10,
            n_informative=5,
            n_redundant=1,
            n_classes=3,
            n_clusters_per_class=1,
            flip_y=0.05,
            class_sep=1.0,
        ),
        200,
    ),
    DevSet(
        "4class-300x20-skewed",
        _classification(
            n_features=20,
            n_informative=6,
            n_classes=4,
            n_clusters_per_class=1,
            flip_y=0.05,
            class_sep=0.8,
            weights=[0.4, 0.3, 0.2, 0.1],
        ),
        300,
    ),
    DevSet("moons-300x10", _moons(noise=0.35, extra=8), 300),
]


def split(dev: DevSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The development rows and a large test set of the same generator, standardised on the former."""
    from sklearn.model_selection import train_test_split

    X, y = dev.make(dev.rows + TEST_ROWS)
    X_dev, X_test, y_dev, y_test = train_test_split(X, y, train_size=dev.rows, stratify=y, random_state=0)
    mean, std = X_dev.mean(0), X_dev.std(0) + 1e-12
    return (X_dev - mean) / std, y_dev, (X_test - mean) / std, y_test


def sample_small(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` configurations drawn at random from sweep=small's space (conf/sweep/small.yaml): Adam."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        reg = [None, "l2", "dropout"][rng.integers(3)]
        cfg = {
            "optimizer": "adam",
            "learning_rate": float(np.exp(rng.uniform(np.log(1e-3), np.log(3e-2)))),
            "mini_batch_size": int([16, 32, 64][rng.integers(3)]),
            "hidden_layer_sizes": [(32,), (64, 32)][rng.integers(2)],
            "regularization": reg,
        }
        if reg == "l2":
            cfg["lambd"] = float(np.exp(rng.uniform(np.log(1e-3), np.log(10.0))))
        if reg == "dropout":
            cfg["keep_prob"] = float(rng.uniform(0.5, 1.0))
        out.append(cfg)
    return out


def sample_gd(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` configurations like the cat study's space (conf/sweep/cat.yaml): plain gradient descent."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        reg = [None, "l2", "dropout"][rng.integers(3)]
        cfg = {
            "optimizer": "gd",
            "learning_rate": float(np.exp(rng.uniform(np.log(1e-3), np.log(5e-2)))),
            "mini_batch_size": int([16, 32, 64, 128][rng.integers(4)]),
            "hidden_layer_sizes": (20, 7, 5),
            "regularization": reg,
            "initialization": "xavier",
        }
        if reg == "l2":
            cfg["lambd"] = float(np.exp(rng.uniform(np.log(1e-2), np.log(10.0))))
        if reg == "dropout":
            cfg["keep_prob"] = float(rng.uniform(0.5, 1.0))
        out.append(cfg)
    return out


SPACES = {"small": sample_small, "gd": sample_gd}


def fit_recording(cfg: dict[str, Any], seed: int, X, y, X_eval) -> tuple[NeuralNetwork, np.ndarray]:
    """Train for EPOCHS; returns the network and its class probabilities on ``X_eval`` after every epoch."""
    net = NeuralNetwork(epoch=EPOCHS, seed=seed, **cfg)
    probs: list[np.ndarray] = []
    net.fit(X, y, callback=lambda epoch, metrics: probs.append(net.predict_proba(X_eval)))
    return net, np.stack(probs)  # (epochs, rows, classes)


def balanced_accuracy(y_idx: np.ndarray, predicted: np.ndarray, k: int) -> float:
    recalls = [np.mean(predicted[y_idx == c] == c) for c in range(k) if np.any(y_idx == c)]
    return float(np.mean(recalls))


def bal_curve(probs: np.ndarray, y_idx: np.ndarray, k: int) -> np.ndarray:
    """Balanced accuracy after every epoch from (epochs, rows, classes) probabilities."""
    return np.array([balanced_accuracy(y_idx, p.argmax(1), k) for p in probs])


def smoothed_peak(curves: np.ndarray, window: int = 5) -> int:
    """The epoch (0-based) at which the mean of ``curves`` (folds x seed sets), smoothed over ``window``
    epochs, peaks."""
    mean = curves.mean(axis=0)
    padded = np.pad(mean, (window // 2, window - 1 - window // 2), mode="edge")
    return int(np.argmax(np.convolve(padded, np.ones(window) / window, mode="valid")))


def cross_validate(cfg, X, y, seed0: int, X_test):
    """Fold curves (validation probabilities per epoch, pooled out of fold) and the fold models' test probabilities."""
    from sklearn.model_selection import StratifiedKFold

    classes = np.unique(y)
    y_idx = np.searchsorted(classes, y)
    k = len(classes)
    oof = np.zeros((EPOCHS, len(y), k))
    fold_bal, fold_logloss, test_probs = [], [], []
    for f, (tr, va) in enumerate(StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(X, y)):
        net = NeuralNetwork(epoch=EPOCHS, seed=seed0 + f, **cfg)
        val_p, test_p = [], []

        def record(epoch, metrics, net=net, va=va, val_p=val_p, test_p=test_p):
            val_p.append(net.predict_proba(X[va]))
            test_p.append(net.predict_proba(X_test))

        net.fit(X[tr], y[tr], callback=record)
        vp = np.stack(val_p)
        oof[:, va] = vp
        fold_bal.append(bal_curve(vp, y_idx[va], k))
        # class-weighted log loss: each class weighs n / (k n_c) (the fold's validation counts)
        counts = np.bincount(y_idx[va], minlength=k)
        w = (len(va) / (k * counts))[y_idx[va]]
        fold_logloss.append(-(np.log(np.clip(vp[:, np.arange(len(va)), y_idx[va]], 1e-12, 1)) * w).sum(1) / w.sum())
        test_probs.append(np.stack(test_p))
    return np.array(fold_bal), np.array(fold_logloss), oof, np.stack(test_probs)  # test: (folds, epochs, rows, k)


def pooled_auc_curve(oof: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    k = oof.shape[2]
    if k == 2:
        return np.array([roc_auc_score(y_idx, p[:, 1]) for p in oof])
    return np.array([roc_auc_score(y_idx, p / p.sum(1, keepdims=True), multi_class="ovr") for p in oof])


def oversample(X, y, seed: int):
    """Each class repeated (rows drawn with replacement past a whole copy) to the largest class's count."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    rows = []
    for c, n in zip(classes, counts, strict=True):
        idx = np.flatnonzero(y == c)
        rows.append(np.concatenate([np.tile(idx, counts.max() // n), rng.choice(idx, counts.max() % n, False)]))
    rows = np.concatenate(rows)
    return X[rows], y[rows]


def best_threshold(p1: np.ndarray, y_idx: np.ndarray) -> float:
    """The threshold on P(class 1) that maximises balanced accuracy on out-of-fold predictions."""
    candidates = np.unique(np.concatenate([[0.5], p1]))
    scores = [balanced_accuracy(y_idx, (p1 >= t).astype(int), 2) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def study(dev: DevSet, space: str, n_configs: int, seeds: int) -> dict[str, Any]:
    X, y, X_test, y_test = split(dev)
    classes = np.unique(y)
    k = len(classes)
    y_idx, yt_idx = np.searchsorted(classes, y), np.searchsorted(classes, y_test)
    per_config = []
    for cfg in SPACES[space](n_configs):
        fold_bal, fold_ll, oof, _ = cross_validate(cfg, X, y, 1, X_test)
        mean = fold_bal.mean(0)
        auc = pooled_auc_curve(oof, y_idx)
        # what the configuration can do: its refit's best test balanced accuracy at any epoch (seed 0)
        _, tp = fit_recording(cfg, 0, X, y, X_test)
        per_config.append(
            {
                "cfg": cfg,
                "bal_best": float(mean.max()),
                "peak": int(mean.argmax()),
                "auc_best": float(auc.max()),
                "wlogloss_best": float(fold_ll.mean(0).min()),
                "oof": oof,
                "truth": float(bal_curve(tp, yt_idx, k).max()),
                "fold_bal": fold_bal,
            }
        )
    chosen = per_config[int(np.argmax([c["bal_best"] for c in per_config]))]
    pooled = [chosen["fold_bal"]] + [
        cross_validate(chosen["cfg"], X, y, 1 + FOLDS * r, X_test)[0] for r in range(1, POOLED_SEED_SETS)
    ]
    epochs = {"peak": chosen["peak"], "pooled": smoothed_peak(np.concatenate(pooled)), "full": EPOCHS - 1}
    rules: dict[str, list[float]] = {r: [] for r in ("peak", "pooled", "full", "ensemble")}
    collapsed: dict[str, int] = {r: 0 for r in rules}
    imbalance: dict[str, list[float]] = {"none": [], "class weights": [], "OOF threshold": []}
    for s in range(seeds):
        _, tp = fit_recording(chosen["cfg"], s, X, y, X_test)
        for rule, e in epochs.items():
            pred = tp[e].argmax(1)
            rules[rule].append(balanced_accuracy(yt_idx, pred, k))
            collapsed[rule] += int(len(np.unique(pred)) == 1)
        _, _, _, fold_test = cross_validate(chosen["cfg"], X, y, s, X_test)
        pred = fold_test[:, chosen["peak"]].mean(0).argmax(1)
        rules["ensemble"].append(balanced_accuracy(yt_idx, pred, k))
        collapsed["ensemble"] += int(len(np.unique(pred)) == 1)
        if k == 2 and space == "small":  # imbalance corrections, at the pooled rule's epochs
            e = epochs["pooled"]
            imbalance["none"].append(rules["pooled"][-1])
            Xo, yo = oversample(X, y, s)
            _, tpo = fit_recording(chosen["cfg"], s, Xo, yo, X_test)
            imbalance["class weights"].append(balanced_accuracy(yt_idx, tpo[e].argmax(1), 2))
            t = best_threshold(chosen["oof"][chosen["peak"]][:, 1], y_idx)
            imbalance["OOF threshold"].append(balanced_accuracy(yt_idx, (tp[e][:, 1] >= t).astype(int), 2))
    from scipy.stats import spearmanr

    truth = [c["truth"] for c in per_config]
    objectives = {}
    for name in ("bal_best", "auc_best", "wlogloss_best"):
        score = np.array([c[name] for c in per_config]) * (-1 if name == "wlogloss_best" else 1)
        objectives[name] = {
            "spearman": float(spearmanr(score, truth).statistic),
            "regret": float(max(truth) - truth[int(np.argmax(score))]),
        }
    return {
        "dev_set": f"{dev.name} ({space})",
        "space": space,
        "classes": k,
        "chosen": chosen["cfg"],
        "epochs": epochs,
        "rules": rules,
        "collapsed": collapsed,
        "objectives": objectives,
        "imbalance": {k_: v for k_, v in imbalance.items() if v},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--spaces", nargs="*", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--only", nargs="*", help="dev set names")
    parser.add_argument("--out", default=None, help="write the raw results as JSON here")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    started = time.process_time()
    results = []
    with threadpool_limits(1):
        for dev in DEV_SETS:
            if args.only and dev.name not in args.only:
                continue
            for space in args.spaces:
                results.append(study(dev, space, args.configs, args.seeds))
                r = results[-1]
                print(
                    f"{r['dev_set']}: epochs {r['epochs']}, "
                    + ", ".join(
                        f"{rule} {np.mean(v):.3f} (worst {min(v):.3f}, collapsed {r['collapsed'][rule]})"
                        for rule, v in r["rules"].items()
                    ),
                    flush=True,
                )
    print_tables(results)
    print(f"\nCPU time: {time.process_time() - started:.0f} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1, default=str)


def print_tables(results: list[dict[str, Any]]) -> None:
    rules = list(results[0]["rules"])
    print("\nrefit rules: test balanced accuracy, mean over seeds (worst seed) [collapsed seeds]")
    print("| dev set (space) | epochs: peak / pooled | " + " | ".join(rules) + " |")
    print("|---|---|" + "---:|" * len(rules))
    for r in results:
        cells = [
            f"{np.mean(r['rules'][x]):.3f} ({min(r['rules'][x]):.3f})"
            + (f" [{r['collapsed'][x]}]" if r["collapsed"][x] else "")
            for x in rules
        ]
        print(
            f"| {r['dev_set']} | {r['epochs']['peak'] + 1} / {r['epochs']['pooled'] + 1} | " + " | ".join(cells) + " |"
        )
    means = [np.mean([np.mean(r["rules"][x]) for r in results]) for x in rules]
    worst = [np.mean([min(r["rules"][x]) for r in results]) for x in rules]
    total = [sum(r["collapsed"][x] for r in results) for x in rules]
    cells = (f"**{m:.3f}** ({w:.3f}) [{t}]" for m, w, t in zip(means, worst, total, strict=True))
    print("| **mean** | | " + " | ".join(cells) + " |")
    print(
        "\nobjectives: Spearman with the configurations' test balanced accuracy (best epoch of a seed-0 refit); "
        "regret of the objective's pick"
    )
    names = {
        "bal_best": "balanced accuracy, best epoch",
        "auc_best": "pooled out-of-fold AUC, best epoch",
        "wlogloss_best": "class-weighted log loss, best epoch",
    }
    print("| dev set (space) | " + " | ".join(names.values()) + " |")
    print("|---|" + "---:|" * len(names))
    for r in results:
        print(
            f"| {r['dev_set']} | "
            + " | ".join(
                f"{r['objectives'][key]['spearman']:+.2f} / {r['objectives'][key]['regret']:.3f}" for key in names
            )
            + " |"
        )
    print(
        "| **mean** | "
        + " | ".join(
            f"**{np.nanmean([r['objectives'][key]['spearman'] for r in results]):+.2f} / "
            f"{np.mean([r['objectives'][key]['regret'] for r in results]):.3f}**"
            for key in names
        )
        + " |"
    )
    binary = [r for r in results if r["imbalance"]]
    if binary:
        print(
            "\nimbalance (binary dev sets, small space, pooled epochs): test balanced accuracy, mean over seeds (worst)"
        )
        ways = list(binary[0]["imbalance"])
        print("| dev set | " + " | ".join(ways) + " |")
        print("|---|" + "---:|" * len(ways))
        for r in binary:
            print(
                f"| {r['dev_set']} | "
                + " | ".join(f"{np.mean(r['imbalance'][w]):.3f} ({min(r['imbalance'][w]):.3f})" for w in ways)
                + " |"
            )


if __name__ == "__main__":
    main()
