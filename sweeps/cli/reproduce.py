"""Re-run a logged run from its config.yaml and check the numbers agree.

    numpynet-reproduce RUN_ID [--tracking-uri URI] [KEY=VALUE ...] [--debug]

The new run is tagged ``numpynet.reproduced_from=<RUN_ID>``. The verdict
compares the per-epoch cost histories as stored in MLflow, bit for bit (on
the same machine and library versions they must be identical), and reports
whether the data hash and the final weights match too. Exit status 0 when
identical, 1 when not, 2 for a bad run id or config.

``KEY=VALUE`` overrides adjust the logged config, e.g. a data path that
differs on this machine (``data.train_path=...``); the comparison still
applies, and a changed data hash is reported.
"""

from __future__ import annotations

import argparse
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

from numpynet.sweeps.cli.logged_config import load_logged_config, refuse_interpolations, refuse_sweep_parent
from numpynet.sweeps.cli.stdout_faults import quiet_on_a_closed_pipe
from numpynet.sweeps.errors import UserError
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording import store as tracking
from numpynet.sweeps.recording.names import REPRODUCTION as VERDICT_TAG
from numpynet.sweeps.recording.redact import mask_url
from numpynet.sweeps.training import numeric_env
from numpynet.sweeps.training.config import check_config

log = logging.getLogger(__name__)

COMPARED_METRICS = ("train_cost", "val_cost")


@dataclass
class Verdict:
    """Outcome of a reproduction; ``identical`` is the one that matters."""

    source_run_id: str
    new_run_id: str
    epochs: int
    first_difference: tuple[str, int, float, float] | None = None  # metric, epoch, source, new
    length_mismatch: tuple[str, int, int] | None = None  # metric, source length, new length
    same_data: bool = True
    same_weights: bool | None = None  # None when the source was stopped early or has no digest
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.first_difference is None and self.length_mismatch is None

    def describe(self) -> str:
        if self.identical:
            text = (
                f"identical: run {self.new_run_id} reproduces run {self.source_run_id} bit for bit "
                f"({', '.join(COMPARED_METRICS)} over {self.epochs} epochs"
            )
            if self.same_weights is not None:
                text += ", weights " + ("identical" if self.same_weights else "DIFFERENT")
            text += ")"
        elif self.length_mismatch is not None:
            metric, a, b = self.length_mismatch
            text = (
                f"DIFFERENT: run {self.new_run_id} logged {b} epochs of {metric}, run {self.source_run_id} logged {a}"
            )
        else:
            metric, epoch, a, b = self.first_difference  # type: ignore[misc]
            text = (
                f"DIFFERENT: {metric} of run {self.new_run_id} first differs from run "
                f"{self.source_run_id} at epoch {epoch}: {a!r} vs {b!r}"
            )
        if not self.same_data:
            text += "; the data hash differs, so the data changed"
        return "; ".join([text, *self.notes])


class Reproduction:
    """A run to reproduce, with its logged config loaded and adjusted.

    Split from :meth:`run` so that a caller can look at ``cfg`` (say, the
    number of epochs for a progress bar) before training starts.
    """

    def __init__(self, run_id: str, *, tracking_uri: str | None = None, overrides: Sequence[str] = ()):
        self.run_id = run_id
        self.uri = tracking.resolve_tracking_uri(tracking_uri)
        _require_a_store(self.uri, given=tracking_uri is not None)
        tracking.check_tracking_server(self.uri)  # seconds, not MLflow's minutes of retries and then "no run"
        self.client = MlflowClient(tracking_uri=self.uri)
        try:
            source = self.client.get_run(run_id)
        except MlflowException as exc:
            raise UserError(f"no run {run_id!r} in the tracking store {mask_url(self.uri)} ({exc.message})") from exc
        refuse_sweep_parent(source)
        cfg = load_logged_config(self.client, run_id)
        if overrides:
            try:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
            except Exception as exc:
                raise UserError(f"bad override in {list(overrides)}: {exc}") from exc
        refuse_interpolations(cfg, run_id)
        experiment = self.client.get_experiment(source.info.experiment_id)
        cfg.tracking.uri = self.uri
        cfg.tracking.experiment = experiment.name
        cfg.tracking.run_name = f"reproduce-{source.info.run_name or run_id[:8]}"
        self.cfg = check_config(cfg)
        self.blas_threads = _recorded_threads(source.data.tags)
        self.environment_warning = environment_warning(source.data.tags, run_id, self.blas_threads)
        if self.environment_warning:
            log.warning("%s", self.environment_warning)

    def run(self, on_epoch: Any = None) -> Verdict:
        """Train into the source run's experiment and compare with it."""
        from threadpoolctl import threadpool_limits

        from numpynet import TrainingDiverged
        from numpynet.sweeps.training.trainer import train

        diverged: TrainingDiverged | None = None
        try:
            # the source run's BLAS thread count: a different split of the work may change the bits
            with threadpool_limits(limits=self.blas_threads, user_api="blas"):
                new_run_id = train(self.cfg, on_epoch=on_epoch, tags={names.REPRODUCED_FROM: self.run_id})["run_id"]
        except TrainingDiverged as exc:  # a diverged source run reproduces by diverging identically
            diverged = exc
            new_run_id = getattr(exc, "mlflow_run_id", None)
            if new_run_id is None:
                raise
        verdict = compare_runs(self.client, self.run_id, new_run_id)
        if diverged is not None:
            verdict.notes.append(f"the reproduction diverged too ({diverged})")
        tracking.set_tags(self.client, new_run_id, {VERDICT_TAG: "identical" if verdict.identical else "different"})
        return verdict


def _require_a_store(uri: str, given: bool) -> None:
    """A local SQLite store that does not exist holds no run: say where to look, and create nothing
    (MLflow would create an empty store there)."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.is_file():
        return
    where = "--tracking-uri" if given else "the default store of this folder, ./mlruns/mlflow.db,"
    raise UserError(
        f"no tracking store at {path} ({where} does not exist); run numpynet-reproduce from the "
        "folder the run was made in, or pass --tracking-uri sqlite:////path/to/mlruns/mlflow.db "
        "(or the server's http:// URI)"
    )


def _recorded_threads(tags: dict[str, str]) -> int | None:
    try:
        return int(tags[numeric_env.BLAS_THREADS])
    except (KeyError, ValueError):
        return None


def environment_warning(source_tags: dict[str, str], run_id: str, blas_threads: int | None) -> str | None:
    """Why this machine may not give run ``run_id``'s bits, before training (``None``: no reason known).

    The thread count is left out when the reproduction will use the recorded one.
    """
    if not any(key in source_tags for key in numeric_env.TAGS):
        return f"run {run_id} recorded no numeric environment (numpy, BLAS), so a difference in it cannot be ruled out"
    here = numeric_env.numeric_environment()
    keys = tuple(k for k in numeric_env.TAGS if not (k == numeric_env.BLAS_THREADS and blas_threads is not None))
    changed = numeric_env.differences(source_tags, here, keys)
    if not changed:
        return None
    return (
        f"this machine's numeric environment differs from run {run_id}'s ({'; '.join(changed)}); "
        "the results may differ for that reason alone"
    )


def reproduce(run_id: str, *, tracking_uri: str | None = None, overrides: Sequence[str] = ()) -> Verdict:
    """Train again from run ``run_id``'s config into the same experiment and compare."""
    return Reproduction(run_id, tracking_uri=tracking_uri, overrides=overrides).run()


def compare_runs(client: MlflowClient, source_id: str, new_id: str) -> Verdict:
    """Bitwise comparison of the stored per-epoch cost histories of two runs.

    A source run stopped early (pruned) has a shorter history; its epochs are
    compared with the same epochs of the new run.
    """
    source, new = client.get_run(source_id), client.get_run(new_id)
    stopped = names.STOPPED_EPOCH in source.data.tags
    verdict = Verdict(source_id, new_id, epochs=0)
    for metric in COMPARED_METRICS:
        a, b = _history(client, source_id, metric), _history(client, new_id, metric)
        if len(a) != len(b) and not (stopped and len(a) < len(b)):
            verdict.length_mismatch = (metric, len(a), len(b))
            break
        verdict.epochs = max(verdict.epochs, len(a))
        for epoch, (x, y) in enumerate(zip(a, b, strict=False)):  # a stopped source may be shorter
            if not _same_bits(x, y):
                verdict.first_difference = (metric, epoch, x, y)
                break
        if verdict.first_difference is not None:
            break
    if stopped:
        verdict.notes.append(f"run {source_id} was stopped early; its {verdict.epochs} epochs were compared")
    tags_a, tags_b = source.data.tags, new.data.tags
    verdict.same_data = tags_a.get(names.DATA_HASH) == tags_b.get(names.DATA_HASH)
    weights_a, weights_b = tags_a.get(names.WEIGHTS_SHA256), tags_b.get(names.WEIGHTS_SHA256)
    if weights_a and weights_b and not stopped:
        verdict.same_weights = weights_a == weights_b
    if not any(key in tags_a for key in numeric_env.TAGS):
        verdict.notes.append(f"run {source_id} recorded no numeric environment to compare")
    elif changed := numeric_env.differences(tags_a, tags_b):
        verdict.notes.append(f"the numeric environment differs from run {source_id}'s ({'; '.join(changed)})")
    return verdict


def _history(client: MlflowClient, run_id: str, metric: str) -> list[float]:
    history = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
    return [m.value for m in history]


def _same_bits(x: float, y: float) -> bool:
    if math.isnan(x) and math.isnan(y):
        return True
    return struct.pack("<d", x) == struct.pack("<d", y)


def main(argv: list[str] | None = None) -> int:
    """``numpynet-reproduce``: exit 0 identical, 1 different, 2 usage error."""
    import os
    import sys

    from numpynet.sweeps import interrupt
    from numpynet.sweeps.cli.exit_status import print_error, report_error
    from numpynet.sweeps.cli.progress import EpochProgress

    prog = "numpynet-reproduce"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id", help="the MLflow run to reproduce")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="adjust the logged config")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/mlruns/mlflow.db)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    debug = args.debug or os.environ.get("HYDRA_FULL_ERROR") == "1"
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    logging.getLogger("numpynet.sweeps").setLevel(logging.INFO)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # we report a refused write once
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # one "Retrying ..." line per retry
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def on_epoch(epoch: int, metrics: dict) -> None:
        interrupt.check()  # the shared signal policy: stop at an epoch boundary, the run ends KILLED
        progress.update(epoch, metrics)

    try:
        with interrupt.deferred_signals():
            with interrupt.at_once():  # reading the source run creates nothing: a signal stops it at once
                reproduction = Reproduction(args.run_id, tracking_uri=args.tracking_uri, overrides=args.overrides)
            with EpochProgress(total=int(reproduction.cfg.train.epoch)) as progress:
                verdict = reproduction.run(on_epoch=on_epoch)
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 2
        print_error(prog, "terminated" if signum == 15 else "interrupted", exc)
        return 128 + signum
    except Exception as exc:  # noqa: BLE001 - one line and a status, as every CLI here
        return report_error(prog, exc, debug)
    print(verdict.describe())
    return 0 if verdict.identical else 1


if __name__ == "__main__":
    raise SystemExit(main())


@quiet_on_a_closed_pipe
def reproduce_main(argv: list[str] | None = None) -> int:
    """``numpynet-reproduce RUN_ID [--tracking-uri URI] [KEY=VALUE ...] [--debug]``"""
    return main(argv)
