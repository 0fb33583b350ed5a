"""The embedded worker: a child process of ``dicom-node serve``, restarted if it dies.

Child processes of the node (the worker, the listener processes) must not
outlive it: a node killed with SIGKILL would otherwise leave its worker running
beside the next one. Each child asks the kernel for SIGTERM when its parent
dies (:func:`exit_with_parent`, Linux's ``PR_SET_PDEATHSIG``) and also watches
its parent's process ID.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOGGER = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int, poll_seconds: float = 2.0) -> None:
    """Make this process end (SIGTERM) when the process ``parent_pid`` ends.

    Uses the parent-death signal where the kernel has it (immediate), and a
    thread that polls the parent's process ID everywhere (within
    ``poll_seconds``). If the parent is already gone, the signal comes at once.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        LOGGER.debug("No parent-death signal on this system; polling the parent instead")

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        LOGGER.warning("The node process %d is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class WorkerSupervisor:
    """Keeps one ``dicom-node worker`` process running until :meth:`stop`."""

    def __init__(
        self,
        config_file: Path | None,
        extra_args: Sequence[str] = (),
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._command = [sys.executable, "-m", "dicom_node"]
        if config_file is not None:
            self._command += ["--config", str(config_file)]
        self._command += ["worker", "--parent-pid", str(os.getpid()), *extra_args]
        self._on_exit = on_exit
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        LOGGER.info("Starting the embedded worker: %s", " ".join(self._command[1:]))
        return subprocess.Popen(self._command, env=os.environ.copy())

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            self._process = self._spawn()
            code = self._process.wait()
            if self._stopping.is_set():
                return
            LOGGER.error(
                "The embedded worker exited with code %s; restarting in %.0f s", code, backoff
            )
            if self._on_exit is not None:
                self._on_exit()
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 60.0)

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the worker to finish its current task and exit (Celery's warm shutdown)."""
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            LOGGER.warning("The embedded worker did not stop in %.0f s; killing it", timeout)
            process.kill()
            process.wait()
        self._thread.join(5)
