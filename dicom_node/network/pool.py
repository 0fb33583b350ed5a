"""Listener processes: several pynetdicom servers on one listening socket.

pynetdicom is bound by Python's global interpreter lock: one process receives
at most one core's worth of DICOM. The node process binds the port and starts
``network.listener_processes`` processes (spawned, not forked: the node has
threads) that accept connections on that one socket, each running a
:class:`~dicom_node.network.listener.Listener`. What a listener process reports
(registry events, counts) comes back through a pipe and is handed to the
registry and the counters in the node process, so the registry stays the only
writer of the database and ``/metrics`` sees every process.

A listener process that dies is started again (its slots are freed). Listener
processes die with the node: they ask the kernel for a signal when their
parent dies (:func:`dicom_node.core.supervisor.exit_with_parent`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from dicom_node.core.settings import Settings
from dicom_node.ingest.events import RegistryEvent
from dicom_node.network.frontdoor import SlotTable

LOGGER = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")
_STOP_SECONDS = 10.0


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """The node's listening socket (shared by the listener processes)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class _PipeReport:
    """A listener process's report: everything goes to the node process through the pipe."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._broken = False

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._lock:
                self._connection.send(message)
        except (OSError, ValueError) as exc:
            if not self._broken:
                self._broken = True
                LOGGER.error(
                    "Cannot report to the node process (%s); instances stay in the spool "
                    "and are registered when the node starts again",
                    exc,
                )

    def event(self, event: RegistryEvent) -> None:
        self._send(("event", event))

    def count(self, name: str, label: str) -> None:
        self._send(("count", name, label))


def run_listener_process(
    settings: Settings,
    listen_socket: socket.socket,
    connection: Any,
    slots: SlotTable,
    index: int,
    parent_pid: int,
) -> None:
    """The body of a listener process."""
    from dicom_node.core.logs import configure_logging
    from dicom_node.core.supervisor import exit_with_parent
    from dicom_node.ingest.spool import Spool
    from dicom_node.network.listener import Listener

    exit_with_parent(parent_pid)
    configure_logging(settings.log_level, settings.log_format)
    import pydicom.config

    pydicom.config.convert_wrong_length_to_UN = True
    # The handler only flips a flag: setting a threading.Event from a signal handler can
    # deadlock on the Event's own lock when the signal lands while it is held.
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us, not the terminal
    listener = Listener(
        settings,
        Spool(settings.spool_dir),
        _PipeReport(connection),
        slots=slots,
        index=index,
        listen_socket=listen_socket,
    )
    listener.start()
    while not stopping and os.getppid() == parent_pid:
        time.sleep(0.2)
    listener.stop()
    connection.close()


class ListenerPool:
    """The listener processes of the node, with their reports fed to ``submit`` and ``count``."""

    def __init__(
        self,
        settings: Settings,
        submit: Callable[[RegistryEvent], None],
        count: Callable[[str, str], None],
    ) -> None:
        self._settings = settings
        self._submit = submit
        self._count = count
        self._processes = settings.network.processes
        self.slots = SlotTable(self._processes)
        self._socket: socket.socket | None = None
        self._children: dict[int, Any] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self) -> None:
        self._socket = bind_listening_socket(self._settings.host, self._settings.port)
        for index in range(self._processes):
            thread = threading.Thread(
                target=self._run, args=(index,), name=f"listener-{index}-reports", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        LOGGER.info(
            "Listening on %s:%d with %d listener process(es)",
            self._settings.host,
            self.port,
            self._processes,
        )

    @property
    def port(self) -> int:
        if self._socket is None:
            return self._settings.port
        return int(self._socket.getsockname()[1])

    def _spawn(self, index: int) -> tuple[Any, Any]:
        receiver, sender = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(
            target=run_listener_process,
            args=(self._settings, self._socket, sender, self.slots, index, os.getpid()),
            name=f"listener-{index}",
            daemon=True,
        )
        process.start()
        sender.close()
        self._children[index] = process
        return process, receiver

    def _run(self, index: int) -> None:
        """Start listener process ``index``, relay its reports, start it again if it dies.

        The process is started from this thread, which lives as long as the
        pool: the parent-death signal follows the thread that made the child.
        """
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            process, receiver = self._spawn(index)
            self._relay(receiver)
            process.join()
            self.slots.reset(index)
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            LOGGER.error(
                "Listener process %d exited with code %s; starting it again in %.0f s",
                index,
                process.exitcode,
                backoff,
            )
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 60.0)

    def _relay(self, receiver: Any) -> None:
        while True:
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                receiver.close()
                return
            if message[0] == "event":
                self._submit(message[1])
            elif message[0] == "count":
                self._count(message[1], message[2])

    def stop(self) -> None:
        self._stopping.set()
        for process in list(self._children.values()):
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + _STOP_SECONDS
        for process in list(self._children.values()):
            process.join(max(0.1, deadline - time.monotonic()))
            # join returns once the process's sentinel closes, which on a busy machine can
            # be a moment before the process can be reaped: until then it reads as alive
            while process.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if process.is_alive():
                LOGGER.warning("Listener process %s did not stop; killing it", process.name)
                process.kill()
                process.join()
        for thread in self._threads:
            thread.join(5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
