"""The BLAS thread policy of ``fit`` (numpynet.threads), checked from inside fit.

The callback runs inside the training loop, so it sees the thread count in
force there; no timing is involved.
"""

from __future__ import annotations

import numpy as np
import pytest

from numpynet import NeuralNetwork
from numpynet.threads import SPLIT_MIN_MACS, choose_threads, largest_product

threadpoolctl = pytest.importorskip("threadpoolctl")

CAT = [12288, 20, 7, 5, 1]
WIDE = [1024, 2048, 2048, 10]


def _blas_threads() -> int:
    infos = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not infos:
        pytest.skip("numpy's BLAS is not visible to threadpoolctl")
    return max(i["num_threads"] for i in infos)


def _seen_inside_fit(dims, batch, **kw) -> tuple[list[int], NeuralNetwork]:
    """BLAS threads in force at each epoch's callback of a short fit."""
    rng = np.random.default_rng(0)
    n = 2 * batch
    X = rng.standard_normal((n, dims[0]))
    y = np.arange(n) % max(2, dims[-1])
    seen: list[int] = []
    net = NeuralNetwork(dims, epoch=2, mini_batch_size=batch, learning_rate=1e-3, **kw)
    net.fit(X, y, callback=lambda epoch, m: seen.append(_blas_threads()))
    return seen, net


@pytest.fixture
def budget_two():
    """Two BLAS threads in force around the test (as numpy's default on 2 cores)."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() != 2:
            pytest.skip("this BLAS cannot run 2 threads")
        yield 2


# ------------------------------------------------------------ the rule itself


def test_the_cat_network_is_below_the_split_threshold_and_wide_above():
    assert largest_product(CAT, 32) == 32 * 12288 * 20 < SPLIT_MIN_MACS
    assert largest_product(WIDE, 512) == 512 * 2048 * 2048 >= SPLIT_MIN_MACS
    assert choose_threads(CAT, 32, budget=2) == 1
    assert choose_threads(WIDE, 512, budget=2) == 2
    assert choose_threads(WIDE, 512, budget=1) == 1  # never more than the budget
    assert choose_threads(CAT, 4096, budget=8) == 8  # big batches split too


# ------------------------------------------------------- what fit really uses


def test_a_skinny_network_trains_on_one_thread_and_restores_the_budget(budget_two):
    seen, net = _seen_inside_fit([2048, 20, 1], batch=32)  # 1.3M multiply-adds per product
    assert seen == [1, 1] and net.n_threads_ == 1
    assert _blas_threads() == 2  # restored after fit


def test_a_wide_network_uses_the_whole_budget(budget_two):
    seen, net = _seen_inside_fit([512, 1024, 10], batch=64)  # 33.5M multiply-adds
    assert seen == [2, 2] and net.n_threads_ == 2


def test_a_callers_limit_is_an_upper_bound(budget_two):
    """The sweep harness limits each worker to sweep.blas_threads (cores // n_jobs):
    the core never uses more, even for a wide network."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        seen, net = _seen_inside_fit([512, 1024, 10], batch=64)
        assert _blas_threads() == 1
    assert seen == [1, 1] and net.n_threads_ == 1


@pytest.mark.parametrize("dims, batch, forced", [([2048, 20, 1], 32, 2), ([512, 1024, 10], 64, 1)])
def test_n_threads_overrides_the_rule(budget_two, dims, batch, forced):
    seen, net = _seen_inside_fit(dims, batch, n_threads=forced)
    assert seen == [forced, forced] and net.n_threads_ == forced
    assert _blas_threads() == 2


def test_the_budget_is_restored_when_training_stops_with_an_exception(budget_two):
    X, y = np.random.default_rng(0).standard_normal((64, 2048)), np.arange(64) % 2

    def stop(epoch, metrics):
        assert _blas_threads() == 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        NeuralNetwork([2048, 20, 1], epoch=3).fit(X, y, callback=stop)
    assert _blas_threads() == 2


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_bad_n_threads_names_the_parameter(value):
    X, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"n_threads=.*integer >= 1"):
        NeuralNetwork(n_threads=value, epoch=1).fit(X, y)


def test_current_budget_is_the_thread_count_in_force(budget_two):
    from numpynet.threads import current_budget

    assert current_budget() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert current_budget() == 1
    assert current_budget() == 2


@pytest.mark.parametrize("controller", [None, "no BLAS library"])
def test_current_budget_is_none_when_the_blas_cannot_be_seen(controller, monkeypatch):
    import numpynet.threads as threads

    class NoLibraries:
        lib_controllers: list = []

    monkeypatch.setattr(threads, "_blas_controller", lambda: None if controller is None else NoLibraries())
    assert threads.current_budget() is None
