"""Where a sweep's time goes: one ``numpynet-sweep`` run in this process, with step timers put on from outside.

    python -m benchmarks.harness_steps STUDY_FILE OUT_JSON [SWEEP ARGUMENTS...]

run in the folder whose ``./mlruns`` stores the sweep should use (the harness
section does this in a subprocess, after its timed rounds). The harness is
not changed: before the sweep starts, the functions listed in :data:`STEPS`
are replaced by wrappers that time each call and hand back to the original.
A step's time is the wall time spent inside its functions *minus* the time
spent in other timed functions they call (the journal write inside a
``trial.report`` inside ``NeuralNetwork.fit`` counts as a storage write, not
as fit; the journal reads the sampler makes count as sampling, see
:data:`ABSORBED`), kept apart by thread (the trial's thread, MLflow's writer thread,
others) and by phase (before the trials, the trials, after them: the trial
loop's entry and return mark the phases). Time in the trial loop that no
step holds is the harness's own code between the steps. The times are wall
times: waiting for the GIL held by another thread (the MLflow writer) counts
in the step that waits.

The output JSON holds, per (thread, phase, step), seconds and calls; per
phase and timed function, its calls; the trial loop's start and end, and the start and
end of ``run_sweep`` (which ends the parent run right before it returns);
and the targets that could not be found (a renamed function: the step is
then reported as not measured, never silently as zero).
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("benchmarks")

_JOURNAL = "optuna.storages.journal:JournalStorage"
_JOURNAL_WRITES = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "create_new_trial",
    "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr",
)  # fmt: skip
_JOURNAL_READS = (
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "get_trial_id_from_study_id_trial_number", "get_trial",
    "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs",
)  # fmt: skip
_SAMPLER_METHODS = (
    "infer_relative_search_space",
    "sample_relative",
    "sample_independent",
    "before_trial",
    "after_trial",
)
_RECORDER = "numpynet.sweeps.recording.recorder:Recorder"
_RECORDER_WRITES = (
    "log_params", "set_tags", "log_metrics", "log_metric_rows", "log_text", "log_folder", "call", "end_run", "flush",
    "raise_errors", "_run",
)  # fmt: skip

#: step -> the functions whose own time it is ("module:attribute.path"), on whichever thread calls them
STEPS: dict[str, list[str]] = {
    "sampling": [f"optuna.samplers:{c}.{m}" for c in ("TPESampler", "RandomSampler") for m in _SAMPLER_METHODS],
    "pruning": [f"optuna.pruners:{c}.prune" for c in ("NopPruner", "MedianPruner", "SuccessiveHalvingPruner")],
    "storage writes": [f"{_JOURNAL}.{m}" for m in _JOURNAL_WRITES]
    + ["optuna.storages.journal:JournalFileBackend.append_logs"],
    "storage reads": [f"{_JOURNAL}.{m}" for m in _JOURNAL_READS],
    "run creation": [f"{_RECORDER}.create_run", "numpynet.sweeps.training.trainer:Trainer.start"],
    "fit": ["numpynet:NeuralNetwork.fit"],
    "test evaluation": [
        "numpynet.sweeps.recording.artifacts:test_metrics",
        "numpynet.sweeps.recording.artifacts:summary_metrics",
        "numpynet.sweeps.training.trainer:Trainer._complete",
    ],
    "record writes": [
        *(f"{_RECORDER}.{m}" for m in _RECORDER_WRITES),
        "numpynet.sweeps.training.trainer:_Curves.add",
        "numpynet.sweeps.training.trainer:_Curves.hand_over",
        "numpynet.sweeps.recording.artifacts:write_run_files",
        "numpynet.sweeps.training.trainer:weights_digest",
    ],
}
#: step -> steps whose own time it is when called from them (the sampler reads the trials it models)
ABSORBED: dict[str, tuple[str, ...]] = {"storage reads": ("sampling",)}
#: the trial loop of a worker: its entry and return separate the phases
TRIAL_LOOP = "numpynet.sweeps.search.workers:_trial_loop"
#: the sweep: starts before the stores are opened, returns after the parent run has ended
RUN_SWEEP = "numpynet.sweeps.search.invocation:run_sweep"
MAIN, WRITER, OTHER = "trial thread", "writer thread", "other threads"


def resolve(target: str) -> tuple[Any, str, Any]:
    """(owner, attribute name, current value) of ``module:a.b.c``; raises AttributeError / ImportError."""
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, name, getattr(owner, name)


class StepTimer:
    """Own (exclusive) wall time per (thread, phase, step), and calls per timed function."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str, str], int] = defaultdict(int)
        self.target_calls: dict[tuple[str, str], int] = defaultdict(int)  # (phase, target) -> calls
        self.phase = "before"
        self.marks: dict[str, float] = {}
        self.missing: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def _thread(self) -> str:
        thread = threading.current_thread()
        if thread is threading.main_thread():
            return MAIN
        return WRITER if thread.name == "numpynet-mlflow-writer" else OTHER

    def timed(self, step: str, target: str, fn: Callable) -> Callable:
        timer = self

        absorbed_by = ABSORBED.get(step, ())

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            stack = timer._local.__dict__.setdefault("stack", [])  # [step, time of the timed calls inside]
            if stack and stack[-1][0] in absorbed_by:
                return fn(*args, **kwargs)  # part of the enclosing step
            stack.append([step, 0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = stack.pop()[1]
                if stack:
                    stack[-1][1] += elapsed
                key = (timer._thread(), timer.phase, step)
                with timer._lock:
                    timer.seconds[key] += elapsed - nested
                    timer.calls[key] += 1
                    timer.target_calls[(timer.phase, target)] += 1

        return wrapper

    def _replace(self, target: str, make: Callable[[Callable], Callable]) -> None:
        try:
            owner, name, current = resolve(target)
        except (ImportError, AttributeError):
            self.missing.append(target)
            log.warning("harness steps: %s not found; its step is not measured", target)
            return
        raw = owner.__dict__.get(name, current) if isinstance(owner, type) else current
        if isinstance(raw, (staticmethod, classmethod)):
            new: Any = type(raw)(make(raw.__func__))
        else:
            new = make(current)
        setattr(owner, name, new)
        if isinstance(owner, type) and name not in owner.__dict__:
            self._undo.append(lambda: delattr(owner, name))
        else:
            self._undo.append(lambda: setattr(owner, name, raw))

    def install(self) -> None:
        for step, targets in STEPS.items():
            for target in targets:
                self._replace(target, lambda fn, s=step, t=target: self.timed(s, t, fn))
        self._replace(TRIAL_LOOP, self._marking("trials", "after"))
        self._replace(RUN_SWEEP, self._marking("sweep", "after"))

    def _marking(self, name: str, after: str) -> Callable[[Callable], Callable]:
        def make(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                self.marks.setdefault(f"{name}_start", time.time())
                if name == "trials":
                    self.phase = "trials"
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.marks[f"{name}_end"] = time.time()
                    if name == "trials":
                        self.phase = after

            return wrapper

        return make

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": [
                {"thread": th, "phase": ph, "step": st, "seconds": s, "calls": self.calls[(th, ph, st)]}
                for (th, ph, st), s in sorted(self.seconds.items())
            ],
            "target_calls": [
                {"phase": ph, "target": t, "calls": n} for (ph, t), n in sorted(self.target_calls.items())
            ],
            "marks": self.marks,
            "missing": self.missing,
        }


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m benchmarks.harness_steps STUDY_FILE OUT_JSON [SWEEP ARGUMENTS...]", file=sys.stderr)
        return 2
    study_file, out, extra = Path(args[0]), Path(args[1]), args[2:]
    from numpynet.sweeps.cli.sweep import sweep_main

    timer = StepTimer()
    timer.install()
    code = 0
    try:
        sweep_main([f"sweep={study_file}", *extra])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        timer.uninstall()
    out.write_text(json.dumps({**timer.as_dict(), "exit_code": code}, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
