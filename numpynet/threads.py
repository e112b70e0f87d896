"""How many BLAS threads the training loop uses: one policy for core and harness.

numpy's BLAS (OpenBLAS here) splits every matrix product across all its
threads. For the skinny products of small networks (a batch of 32 rows times
a 12288 x 20 weight matrix, say) the split loses: the threads spend more
time synchronising and sharing memory bandwidth than they save. For wide
layers (batches of 512 through 2048-unit layers) the split pays off nearly
linearly. So the rule is by the size of the largest per-batch product:

- ``n_threads=None`` (the default, "auto"): the *budget* is whatever BLAS
  thread count is in force when ``fit`` starts: numpy's default (one per
  core), or the limit a caller set with ``threadpoolctl`` (the sweep harness
  sets ``sweep.blas_threads``, by default cores // n_jobs, around each
  worker). ``fit`` uses the whole budget when the largest per-batch matrix
  product has at least ``SPLIT_MIN_MACS`` multiply-adds, otherwise one
  thread. It never uses more than the budget, so the harness's setting is an
  upper bound the core respects, and with one worker per core the two agree
  exactly (1 thread).
- ``n_threads=k``: exactly k BLAS threads inside ``fit`` (user override).

The limit applies only around ``fit``'s training loop and is restored
afterwards. threadpoolctl is imported lazily, inside ``fit``: ``import
numpynet`` loads numpy only.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

#: Multiply-adds of the largest per-batch matrix product from which splitting
#: it across BLAS threads pays off (measured on 2 cores with OpenBLAS, see
#: README "Benchmarks": the cat network's 32 x 12288 x 20 products, 7.9M, are
#: faster on one thread; the ``wide`` workload's 512 x 1024 x 2048, 1.1G, is
#: 1.8x faster on two).
SPLIT_MIN_MACS = 32 * 1024 * 1024


def largest_product(dims: Sequence[int], batch: int) -> int:
    """Multiply-adds of the largest matrix product of one mini-batch step."""
    return max(batch * i * o for i, o in zip(dims[:-1], dims[1:], strict=True))


def choose_threads(dims: Sequence[int], batch: int, budget: int) -> int:
    """BLAS threads for training a network of ``dims`` with ``batch`` rows per step.

    ``budget`` is the thread count in force (numpy's default or a caller's
    limit); the answer never exceeds it.
    """
    budget = max(1, int(budget))
    return budget if largest_product(dims, batch) >= SPLIT_MIN_MACS else 1


def _blas_controller():
    """threadpoolctl's view of numpy's BLAS, or None when threadpoolctl is missing."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a dependency of the project, but keep the core usable without it
        return None
    return ThreadpoolController().select(user_api="blas")


def current_budget() -> int | None:
    """BLAS threads in force now (the largest over the loaded BLAS libraries)."""
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:
        return None
    return max(lib.num_threads for lib in ctl.lib_controllers)


@contextlib.contextmanager
def limited(dims: Sequence[int], batch: int, n_threads: int | None) -> Iterator[int | None]:
    """Run the body with the BLAS threads chosen for this network; yields the count.

    Yields None (and changes nothing) when the BLAS cannot be controlled.
    """
    ctl = _blas_controller()
    if ctl is None or not ctl.lib_controllers:
        yield None
        return
    budget = max(lib.num_threads for lib in ctl.lib_controllers)
    threads = n_threads if n_threads is not None else choose_threads(dims, batch, budget)
    if threads == budget and all(lib.num_threads == threads for lib in ctl.lib_controllers):
        yield threads  # nothing to change: skip the set / restore round trip
        return
    with ctl.limit(limits=threads):
        yield threads
