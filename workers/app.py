"""The Celery application: JSON messages, late acknowledgement, two queues.

``io`` carries light work (eligibility checks, later sending results);
``gpu`` carries the analysis. Tasks take database IDs only. Importing this
module imports neither the tasks nor the pipeline (and no torch): the node
uses it to send tasks by name.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from dicom_node.jobs import TaskQueue
from dicom_node.settings import Settings
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
