"""utils/distributed.py: stop requests from Ctrl-C and SIGTERM (torchrun's processes: tests/test_train.py)."""

import os
import signal
import threading

import pytest

from utils import distributed


def test_stop_requests_turn_the_first_signal_into_a_flag_and_the_second_into_an_interrupt(capsys):
    before = signal.getsignal(signal.SIGINT)
    with distributed.stop_requests() as stop:
        assert stop.signal == ""
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM"  # the run goes on to a safe point
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal: at once
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back
    assert "SIGTERM: stopping after this step, then saving" in capsys.readouterr().err


def test_stop_requests_outside_the_main_thread_leave_signals_alone():
    results = []

    def worker():
        with distributed.stop_requests() as stop:
            results.append(stop.signal)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert results == [""]


def test_a_forked_worker_neither_stops_nor_speaks_on_ctrl_c(tmp_path):
    """DataLoader workers inherit the handler; the terminal sends them Ctrl-C too."""
    request = distributed.StopRequest()
    child = os.fork()
    if child == 0:  # the worker: its stderr goes to a file the test reads
        with open(tmp_path / "worker.err", "w") as err:
            os.dup2(err.fileno(), 2)
            request.handle(signal.SIGINT, None)
            os._exit(0 if request.signal == "" else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and (tmp_path / "worker.err").read_text() == ""
