"""Starting a Celery worker for the node's queues (``dicom-node worker``)."""

from __future__ import annotations

from collections.abc import Sequence

from dicom_node.core.settings import Settings
from workers.app import GPU_QUEUE, IO_QUEUE, create_app
from workers.pipeline.deep import ModelUnavailable, verify_models


def run_worker(
    settings: Settings,
    queues: Sequence[str] = (GPU_QUEUE, IO_QUEUE),
    concurrency: int | None = None,
    hostname: str | None = None,
) -> None:
    """Consume ``queues`` until the process receives SIGTERM (finishing the current task)."""
    unknown = set(queues) - {GPU_QUEUE, IO_QUEUE}
    if unknown:
        raise ValueError(f"unknown queue(s) {sorted(unknown)}; use {GPU_QUEUE} and/or {IO_QUEUE}")
    try:
        verify_models(settings.analysis)
    except ModelUnavailable as exc:
        raise ValueError(f"analysis.engine = {settings.analysis.engine!r}: {exc}") from exc
    app = create_app(settings)
    # --quiet drops Celery's start-up banner; its log lines follow log_level as usual.
    argv = [
        "--quiet",
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(concurrency or settings.worker_concurrency),
        "--loglevel",
        settings.log_level,
        "--hostname",
        hostname or "dicom-node@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    app.worker_main(argv)
