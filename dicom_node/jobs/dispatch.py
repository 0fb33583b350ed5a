"""Getting jobs to the workers, and getting them there again when a message is lost.

The job's state lives in the database, its message in the broker. The
:class:`Dispatcher` sends a job once the transaction that completed it has
committed, retrying while the broker is down. Two things can still lose a
message: a broker that keeps its queues in memory (Redis without persistence)
crashing, and a worker killed while it held one. The :class:`Reaper` compares
the jobs that should have a message (complete, queued, and running for
suspiciously long) with what the broker holds (``TaskQueue.pending_job_ids``:
queued messages and messages taken but not yet acknowledged) and sends again
those that have none, in two consecutive looks. Sending twice is harmless:
every task acts only on the state it expects.

With the embedded queue (a SQLite file) messages survive a crash of anything
but the worker that took them; when that worker dies the node sends every
unfinished job again (:meth:`Reaper.recover_all`), as it does when it starts.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.core.settings import JobSettings
from dicom_node.db.models import AnalysisJob, JobState
from dicom_node.db.util import execute_update
from dicom_node.jobs import states as jobs

LOGGER = logging.getLogger(__name__)


class Dispatcher:
    """Sends completed jobs to the queue from its own thread, retrying while the broker is down."""

    def __init__(self, task_queue: jobs.TaskQueue) -> None:
        self._queue = task_queue
        self._jobs: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self._jobs.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.5
        while True:
            job_id = self._jobs.get()
            if job_id is None:
                return
            while True:
                try:
                    self._queue.prepare(job_id)
                    backoff = 0.5
                    break
                except Exception as exc:  # noqa: BLE001 - any broker error: keep the job, retry
                    LOGGER.error(
                        "Cannot queue job %d (%s: %s); retrying in %.0f s",
                        job_id,
                        exc.__class__.__name__,
                        exc,
                        backoff,
                    )
                    threading.Event().wait(backoff)
                    backoff = min(backoff * 2, 60.0)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Reaper:
    """Looks for jobs whose message is gone and hands them to ``resend``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        task_queue: jobs.TaskQueue,
        settings: JobSettings,
        resend: Callable[[Sequence[int]], None],
        count: Callable[[str, str], None],
    ) -> None:
        self._sessions = sessions
        self._queue = task_queue
        self._settings = settings
        self._resend = resend
        self._count = count
        self._suspects: set[int] = set()
        self._broker_failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.reaper_interval_seconds):
            try:
                self.look()
            except Exception:
                LOGGER.exception("The job reaper failed; it looks again later")

    def look(self, now: datetime | None = None) -> list[int]:
        """One look: send again the jobs found without a message twice in a row."""
        now = now or datetime.now(UTC)
        waiting_before = now - timedelta(seconds=self._settings.requeue_after_seconds)
        running_before = now - timedelta(minutes=self._settings.max_running_minutes)
        with self._sessions() as session:
            rows = session.execute(
                select(
                    AnalysisJob.id,
                    AnalysisJob.state,
                    AnalysisJob.updated_at,
                    AnalysisJob.started_at,
                ).where(
                    AnalysisJob.state.in_([JobState.COMPLETE, JobState.QUEUED, JobState.RUNNING])
                )
            ).all()
        candidates: dict[int, JobState] = {}
        for job_id, state, updated_at, started_at in rows:
            state = JobState(state)
            if state is JobState.RUNNING:
                started = _aware(started_at)
                if started is not None and started < running_before:
                    candidates[job_id] = state
            else:
                updated = _aware(updated_at)
                if updated is not None and updated < waiting_before:
                    candidates[job_id] = state
        if not candidates:
            self._suspects.clear()
            return []
        try:
            pending = self._queue.pending_job_ids()
        except Exception as exc:  # noqa: BLE001 - a broker that does not answer: look later
            if not self._broker_failed:
                LOGGER.warning(
                    "Cannot look into the broker's queues (%s: %s); the reaper tries again",
                    exc.__class__.__name__,
                    exc,
                )
            self._broker_failed = True
            return []
        self._broker_failed = False
        if pending is None:
            return []  # a broker that cannot be looked into (see the module's docstring)
        missing = {job_id for job_id in candidates if job_id not in pending}
        lost = sorted(missing & self._suspects)
        self._suspects = missing - set(lost)
        resend = []
        for job_id in lost:
            state = candidates[job_id]
            if state is JobState.RUNNING and not self._requeue_running(job_id):
                continue
            LOGGER.warning(
                "Job %d is %s but the broker holds no message for it (lost in a broker "
                "restart, or with its worker); sending it again",
                job_id,
                state.value,
            )
            self._count("jobs_requeued", state.value)
            resend.append(job_id)
        if resend:
            self._resend(resend)
        return resend

    def _requeue_running(self, job_id: int) -> bool:
        """running -> queued, for a job whose worker is gone with its message."""
        with self._sessions.begin() as session:
            return (
                execute_update(
                    session,
                    update(AnalysisJob)
                    .where(AnalysisJob.id == job_id, AnalysisJob.state == JobState.RUNNING)
                    .values(state=JobState.QUEUED, updated_at=datetime.now(UTC)),
                )
                == 1
            )

    def recover_all(self) -> None:
        """Send every unfinished job again (the only worker died with what it held)."""
        with self._sessions.begin() as session:
            pending = jobs.recover(session, reset_running=True)
        if pending:
            LOGGER.warning(
                "The worker stopped; sending its %d unfinished job(s) again", len(pending)
            )
            self._resend([job_id for job_id, _ in pending])
