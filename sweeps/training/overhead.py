"""Measure what per-epoch MLflow logging costs a training run.

    python -m numpynet.sweeps.training.overhead [--epochs 200] [--repeats 5] [--flush-every 50]

Trains the default digits network ``repeats`` times without logging and
``repeats`` times with :class:`numpynet.sweeps.recording.store.MetricBuffer` writing to a
fresh SQLite store (alternating, to share out machine noise), and prints the
median wall time of each and the relative overhead, as ``train`` sees it:
fit plus handing the last batch over. Storing that last batch overlaps with
the end-of-run plots in ``train``; its wait is reported separately, as is the
process CPU time, which machine load does not blur.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from numpynet.sweeps.training.config import compose_config
from numpynet.sweeps.training.data import load_dataset
from numpynet.sweeps.recording.store import MetricBuffer, open_experiment
from numpynet.sweeps.training.train import build_network


def measure(epochs: int = 200, repeats: int = 5, flush_every: int = 100) -> dict[str, float]:
    """Median seconds without and with logging, and their relative difference."""
    cfg = compose_config([f"train.epoch={epochs}"])
    dataset = load_dataset(cfg.data)
    plain: list[float] = []
    logged: list[float] = []
    in_callback: list[float] = []
    final_wait: list[float] = []
    cpu_plain: list[float] = []
    cpu_logged: list[float] = []
    with tempfile.TemporaryDirectory(prefix="numpynet-overhead-") as tmp:
        client, experiment_id = open_experiment(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "overhead")
        for _ in range(repeats):
            network = build_network(cfg, dataset.n_features, dataset.n_classes)
            start, cpu = time.perf_counter(), time.process_time()
            network.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, callback=lambda e, m: None)
            plain.append(time.perf_counter() - start)
            cpu_plain.append(time.process_time() - cpu)

            network = build_network(cfg, dataset.n_features, dataset.n_classes)
            run_id = client.create_run(experiment_id).info.run_id
            buffer = MetricBuffer(client, run_id, flush_every=flush_every, flush_seconds=3600)
            start, cpu = time.perf_counter(), time.process_time()
            network.fit(dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val, callback=buffer.add)
            buffer.finish()
            logged.append(time.perf_counter() - start)
            buffer.close()
            final_wait.append(buffer.wait_seconds)
            cpu_logged.append(time.process_time() - cpu)
            in_callback.append(buffer.seconds)
            client.set_terminated(run_id)
    base, with_logging = statistics.median(plain), statistics.median(logged)
    cpu_base = statistics.median(cpu_plain)
    return {
        "plain_seconds": base,
        "logged_seconds": with_logging,
        "overhead": (with_logging - base) / base,
        "final_wait_seconds": statistics.median(final_wait),
        "cpu_overhead": (statistics.median(cpu_logged) - cpu_base) / cpu_base,
        "training_thread_seconds": statistics.median(in_callback),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flush-every", type=int, default=100)
    args = parser.parse_args(argv)
    r = measure(args.epochs, args.repeats, args.flush_every)
    print(
        f"{args.epochs}-epoch digits run, median of {args.repeats}: "
        f"{r['plain_seconds']:.3f} s without logging, {r['logged_seconds']:.3f} s with "
        f"-> overhead {100 * r['overhead']:+.1f} % of the fit; then {1000 * r['final_wait_seconds']:.0f} ms "
        f"to store the last batch (overlapped with plotting in train); process CPU "
        f"{100 * r['cpu_overhead']:+.1f} %; training thread inside the logger "
        f"{1000 * r['training_thread_seconds']:.1f} ms"
    )


if __name__ == "__main__":
    main()
