"""A progress bar over epochs for interactive terminals; silent otherwise."""

from __future__ import annotations

import sys
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
