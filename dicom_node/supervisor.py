"""The embedded worker: a child process of ``dicom-node serve``, restarted if it dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

LOGGER = logging.getLogger(__name__)


class WorkerSupervisor:
    """Keeps one ``dicom-node worker`` process running until :meth:`stop`."""

    def __init__(self, config_file: Path | None, extra_args: Sequence[str] = ()) -> None:
        self._command = [sys.executable, "-m", "dicom_node"]
        if config_file is not None:
            self._command += ["--config", str(config_file)]
        self._command += ["worker", *extra_args]
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
