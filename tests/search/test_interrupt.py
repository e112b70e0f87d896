"""Signals during a sweep are recorded and acted on at safe points only."""

from __future__ import annotations

import os
import signal

import pytest

from numpynet.sweeps import interrupt


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_raised_once_at_the_next_safe_point(signum):
    previous = interrupt.install()
    try:
        interrupt.check()  # nothing asked yet: no effect
        os.kill(os.getpid(), signum)  # the handler runs here, and must not raise by itself
        assert interrupt.requested() == signum
        with pytest.raises(KeyboardInterrupt) as info:
            interrupt.check()
        assert info.value.args == (signum,)
        os.kill(os.getpid(), signal.SIGINT)  # a repeat during cleanup is ignored...
        interrupt.check()  # ...and the stop is not raised a second time
        assert interrupt.requested() == signum
    finally:
        interrupt.restore(previous)
    assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]


def test_install_forgets_an_earlier_sweep_s_signal():
    previous = interrupt.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.requested() == signal.SIGTERM
    finally:
        interrupt.restore(previous)
    previous = interrupt.install()
    try:
        assert interrupt.requested() is None
        interrupt.check()
    finally:
        interrupt.restore(previous)
