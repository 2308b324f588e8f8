"""How a command stops on SIGINT and SIGTERM: one line and the shell's status, outputs left whole, also inside
Lightning's loops and with background workers."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Stopped(BaseException):
    """SIGINT or SIGTERM during a command. Not a KeyboardInterrupt, which Lightning's loops turn into ``sys.exit(1)``,
    and SIGTERM would otherwise kill the process before an output's temporary file is removed, or (during a
    prediction or a fit) be swallowed or end in exit status 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stops_on_signals() -> Iterator[None]:
    """Raise ``Stopped`` on SIGINT and SIGTERM for the duration (signals the shell set to be ignored stay so)."""
    previous = {}
    main_thread = threading.current_thread() is threading.main_thread()  # where Python lets handlers be set
    for signum in (signal.SIGINT, signal.SIGTERM) if main_thread else ():
        if signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def leave_signals_to_the_main_process(worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: a forked worker inherited ``stops_on_signals``' handler, and each
    one printed a traceback of its own on Ctrl-C (the terminal signals the whole process group). Workers now
    ignore SIGINT and die quietly on SIGTERM; the main process stops the run and the loader ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
