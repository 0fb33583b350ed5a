"""``/metrics``: the listener's counters and the state of the records, read at scrape time.

The listener's counters (:mod:`dicom_node.runtime.metrics`) live in the process that
runs the listener. Everything else is counted in the database when Prometheus
scrapes, so any process with the database, ``dicom-node web`` included, gives
the same numbers. The stage-duration histogram is built from the stage timings
stored with every result (superseded ones too), so it only ever grows, as a
histogram must.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db import stats

LOGGER = logging.getLogger(__name__)

#: Upper bounds (seconds) of the stage-duration histogram's buckets
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
#: Job states that count towards the queue depth: received series waiting for or in analysis
QUEUED_STATES = ("complete", "queued", "running")


def stage_histogram(timings: Iterable[dict[str, float]]) -> HistogramMetricFamily:
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for stages in timings:
        for stage, seconds in stages.items():
            buckets = counts.setdefault(stage, [0] * len(STAGE_BUCKETS))
            for i, bound in enumerate(STAGE_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            sums[stage] = sums.get(stage, 0.0) + seconds
    family = HistogramMetricFamily(
        "dicom_node_analysis_stage_duration_seconds",
        "Duration of each pipeline stage of the stored analyses",
        labels=["stage"],
    )
    for stage in sorted(counts):
        bounds = ["+Inf" if math.isinf(b) else repr(b) for b in STAGE_BUCKETS]
        family.add_metric(
            [stage], list(zip(bounds, map(float, counts[stage]), strict=True)), sums[stage]
        )
    return family


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class DatabaseCollector(Collector):
    """Series, jobs, outbox and alerts counted in the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dicom_node_database_up", "Whether the database answered this scrape (1) or not (0)"
        )
        try:
            families = self._families()
        except SQLAlchemyError as exc:
            LOGGER.warning("Metrics: the database did not answer (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        with self._sessions() as session:
            series = stats.series_by_state(session)
            jobs = stats.jobs_by_state(session)
            waiting_since = stats.oldest_waiting_job(session)
            oldest = stats.oldest_by_state(session)
            outbox = stats.outbox_by_state(session)
            alerts = stats.alerts_by_kind_and_state(session)
            histogram = stage_histogram(stats.stage_timings(session))
        depth = GaugeMetricFamily(
            "dicom_node_queue_depth",
            "Analysis jobs complete, queued or running (series waiting for or in analysis)",
            value=sum(jobs[state] for state in QUEUED_STATES),
        )
        now = datetime.now(UTC)
        waiting = GaugeMetricFamily(
            "dicom_node_queue_oldest_waiting_seconds",
            "How long the longest-waiting complete or queued job has waited for a worker "
            "(0 when none waits)",
            value=(now - waiting_since).total_seconds() if waiting_since else 0.0,
        )
        ages = GaugeMetricFamily(
            "dicom_node_jobs_oldest_seconds",
            "How long the oldest job of each unfinished state has been in it (stuck work)",
            labels=["state"],
        )
        for state, since in sorted(oldest.items()):
            ages.add_metric([state], (now - since).total_seconds())
        raised = CounterMetricFamily(
            "dicom_node_alerts_raised", "Progression alerts raised, by kind", labels=["kind"]
        )
        by_kind: dict[str, int] = {}
        by_state: dict[str, int] = {"new": 0, "delivered": 0, "acknowledged": 0}
        for (kind, state), n in alerts.items():
            by_kind[kind] = by_kind.get(kind, 0) + n
            by_state[state] = by_state.get(state, 0) + n
        for kind in sorted(by_kind):
            raised.add_metric([kind], by_kind[kind])
        return [
            _labelled(
                "dicom_node_series", "Series by the state of their newest job", "state", series
            ),
            _labelled("dicom_node_jobs", "Analysis jobs by state", "state", jobs),
            depth,
            waiting,
            ages,
            _labelled("dicom_node_outbox_entries", "Outbox entries by state", "state", outbox),
            raised,
            _labelled("dicom_node_alerts", "Progression alerts by state", "state", by_state),
            histogram,
        ]


class _Forward(Collector):
    """The process-wide default registry (listener counters, process and Python metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def build_registry(sessions: sessionmaker[Session]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward())
    registry.register(DatabaseCollector(sessions))
    return registry
