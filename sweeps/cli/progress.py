"""Progress while a command works: over epochs (``numpynet-train``, ``numpynet-reproduce``)
and over trials (``numpynet-sweep``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO


class EpochProgress:
    """``with EpochProgress(total) as p: train(cfg, on_epoch=p.update)``.

    Draws a tqdm bar on ``stream`` (stderr) only when it is a terminal, so
    logs and CI output stay clean. The postfix shows the latest costs.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self._bar: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="epoch", file=self.stream, dynamic_ncols=True, leave=False)
        return self

    def update(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._bar is None:
            return
        shown = {k: f"{metrics[k]:.4g}" for k in ("train_cost", "val_cost", "val_accuracy") if k in metrics}
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(1)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class TrialProgress:
    """tqdm over trials on an interactive terminal; otherwise one plain line per finished trial.

    The lines (stderr, flushed) are for output sent to a file, a pipe, CI or a
    scheduler: ``trial 12 COMPLETE value 0.9712, best 0.9790 (trial 7) | 13/40,
    elapsed 0:21, ETA 0:43``. Trials finished before this invocation (a resumed
    study) are summed up in one line, not listed. ``clock`` gives the seconds
    that elapsed and ETA are computed from (a test passes its own).
    """

    def __init__(self, stream=None, clock: Callable[[], float] = time.monotonic):
        self._bar = None
        self._stream = stream
        self._now = clock
        self._seen: set[int] | None = None
        self._start = clock()
        self._done_at_start = 0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def update(self, done: int, total: int, study=None) -> None:
        try:
            interactive = self.stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
        if not interactive:
            if study is not None:
                self._lines(done, total, study)
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="trial", desc="sweep", dynamic_ncols=True)
        self._bar.n = min(done, total)
        self._bar.refresh()

    def _lines(self, done: int, total: int, study) -> None:
        from numpynet.sweeps.search.budget import counts_in_budget

        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        done = sum(counts_in_budget(t) for t in finished)  # from the same snapshot as the new trials below
        if self._seen is None:  # first call: what exists already is not news
            self._seen = {t.number for t in finished}
            self._done_at_start = done
            self._start = self._now()  # the trials start now: start-up is not part of the rate
            if done:
                print(f"resuming: {done}/{total} trials done", file=self.stream, flush=True)
            return
        new = sorted(
            (t for t in finished if t.number not in self._seen),
            key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number),
        )
        if not new:
            return
        elapsed = self._now() - self._start
        ran = max(1, done - self._done_at_start)
        eta = elapsed / ran * max(0, total - done)
        best = _best_trial(study)
        count = done - sum(counts_in_budget(t) for t in new)  # each line counts the trials up to its own
        for trial in new:
            self._seen.add(trial.number)
            count += counts_in_budget(trial)
            print(trial_line(trial, best, count, total, elapsed, eta), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def trial_line(trial, best, done: int, total: int, elapsed: float, eta: float) -> str:
    """One progress line for a finished trial (see :class:`TrialProgress`)."""
    value = f"value {trial.value:.4f}" if trial.value is not None else "no value"
    best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else "no best yet"
    return (
        f"trial {trial.number} {trial.state.name} {value}, {best_text} | {min(done, total)}/{total}, "
        f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}"
    )
