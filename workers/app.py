"""The Celery application: JSON messages, late acknowledgement, two queues.

``io`` carries light work (eligibility checks, later sending results);
``gpu`` carries the analysis. Tasks take database IDs only. Importing this
module imports neither the tasks nor the pipeline (and no torch): the node
uses it to send tasks by name.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from celery import Celery

from dicom_node.core.settings import Settings
from dicom_node.jobs.states import TaskQueue
from workers import transport

LOGGER = logging.getLogger(__name__)

IO_QUEUE = "io"
GPU_QUEUE = "gpu"
PREPARE_TASK = "workers.tasks.prepare_series"
ANALYSE_TASK = "workers.tasks.analyse_series"
FETCH_PRIORS_TASK = "workers.tasks.fetch_priors"
SETTINGS_KEY = "dicom_node_settings"


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.resolved_broker_url.startswith(("redis://", "rediss://")):
        # An unacknowledged message returns to the queue after this long; it must
        # exceed the longest analysis.
        return {"visibility_timeout": 3600}
    return {}


def create_app(settings: Settings) -> Celery:
    transport.register()
    app = Celery("dicom_node", broker=settings.resolved_broker_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=IO_QUEUE,
        task_routes={
            PREPARE_TASK: {"queue": IO_QUEUE},
            ANALYSE_TASK: {"queue": GPU_QUEUE},
            FETCH_PRIORS_TASK: {"queue": IO_QUEUE},
        },
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    app.conf[SETTINGS_KEY] = settings
    return app


def settings_of(app: Celery) -> Settings:
    settings = app.conf.get(SETTINGS_KEY)
    if not isinstance(settings, Settings):
        raise RuntimeError("the Celery app was not made by workers.app.create_app")
    return settings


class CeleryTaskQueue(TaskQueue):
    """Sends tasks by name (the sender never imports the task code)."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def prepare(self, job_id: int) -> None:
        self._app.send_task(PREPARE_TASK, args=[job_id], queue=IO_QUEUE)

    def analyse(self, job_id: int) -> None:
        self._app.send_task(ANALYSE_TASK, args=[job_id], queue=GPU_QUEUE)

    def fetch_priors(self, series_id: int) -> None:
        self._app.send_task(FETCH_PRIORS_TASK, args=[series_id], queue=IO_QUEUE)

    def pending_job_ids(self) -> frozenset[int] | None:
        """Jobs with a prepare or analyse message in the broker (see ``TaskQueue``).

        Redis: the ``io`` and ``gpu`` lists (every priority) and the messages
        taken by workers and not yet acknowledged (kombu's ``unacked`` hash).
        The embedded queue deletes a message when a worker takes it, so it
        cannot tell what a worker holds: None.
        """
        url = str(self._app.conf.broker_url)
        if not url.startswith(("redis://", "rediss://")):
            return None
        with self._app.connection_for_read() as connection:
            client = connection.default_channel.client
            raw: list[bytes] = []
            for queue in (IO_QUEUE, GPU_QUEUE):
                for key in [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9))]:
                    raw += client.lrange(key, 0, -1)
            for value in client.hvals("unacked"):
                try:
                    raw.append(json.dumps(json.loads(value)[0]).encode())
                except (ValueError, TypeError, IndexError, KeyError):
                    continue
        return frozenset(job for job in map(_job_of_message, raw) if job is not None)


def _job_of_message(raw: bytes | str) -> int | None:
    """The job ID of a prepare or analyse task message (Celery's message protocol 2)."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        if headers.get("task") not in (PREPARE_TASK, ANALYSE_TASK):
            return None
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, TypeError, KeyError, IndexError):
        return None
