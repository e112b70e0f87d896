"""Measure what per-epoch MLflow logging costs a training run.

    python -m sweeps.overhead [--epochs 200] [--repeats 5] [--flush-every 50]

Trains the default digits network ``repeats`` times without logging and
``repeats`` times with :class:`sweeps.tracking.MetricBuffer` writing to a
fresh SQLite store (alternating, to share out machine noise), and prints the
median wall time of each and the relative overhead. The logged variant's time
includes waiting for the last batch to be stored.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sweeps.config import compose_config
from sweeps.data import load_dataset
from sweeps.tracking import MetricBuffer, open_experiment
from sweeps.train import build_network


def measure(epochs: int = 200, repeats: int = 5, flush_every: int = 50) -> dict[str, float]:
    """Median seconds without and with logging, and their relative difference."""
    cfg = compose_config([f"train.epoch={epochs}"])
    dataset = load_dataset(cfg.data)
    plain: list[float] = []
    logged: list[float] = []
    in_callback: list[float] = []
    with tempfile.TemporaryDirectory(prefix="numpynet-overhead-") as tmp:
        client, experiment_id = open_experiment(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "overhead")
        for _ in range(repeats):
            network = build_network(cfg, dataset.n_features, dataset.n_classes)
            start = time.perf_counter()
            network.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, callback=lambda e, m: None)
            plain.append(time.perf_counter() - start)

            network = build_network(cfg, dataset.n_features, dataset.n_classes)
            run_id = client.create_run(experiment_id).info.run_id
            buffer = MetricBuffer(client, run_id, flush_every=flush_every, flush_seconds=3600)
            start = time.perf_counter()
            network.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, callback=buffer.add)
            buffer.close()
            logged.append(time.perf_counter() - start)
            in_callback.append(buffer.seconds)
            client.set_terminated(run_id)
    base, with_logging = statistics.median(plain), statistics.median(logged)
    return {
        "plain_seconds": base,
        "logged_seconds": with_logging,
        "overhead": (with_logging - base) / base,
        "training_thread_seconds": statistics.median(in_callback),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flush-every", type=int, default=50)
    args = parser.parse_args(argv)
    r = measure(args.epochs, args.repeats, args.flush_every)
    print(
        f"{args.epochs}-epoch digits run, median of {args.repeats}: "
        f"{r['plain_seconds']:.3f} s without logging, {r['logged_seconds']:.3f} s with "
        f"-> overhead {100 * r['overhead']:+.1f} % "
        f"(training thread spent {1000 * r['training_thread_seconds']:.1f} ms in the logger)"
    )


if __name__ == "__main__":
    main()
