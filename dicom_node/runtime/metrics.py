"""Counters of the DICOM listener, kept in the node process (Prometheus client).

The listener may run in several processes (``network.listener_processes``);
they report what they count to the node process, which holds the counters
and exposes them with the database-derived metrics at ``/metrics``
(:mod:`dicom_node.web.metrics`). Instances received and refused are counted
from the events the registry receives (:func:`observe`); everything that
leaves no record in the database (connections closed at the front door,
associations aborted, associations refused for the limit) is counted by name
(:func:`count`). They count from the start of the process, as Prometheus
counters do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dicom_node.ingest.events import IngestRefused, InstanceStored, RegistryEvent

INSTANCES_RECEIVED = Counter(
    "dicom_node_instances_received",
    "Instances received and committed to the spool (C-STORE success)",
)
BYTES_RECEIVED = Counter(
    "dicom_node_received_bytes",
    "Bytes of the instances committed to the spool",
)
INSTANCES_REFUSED = Counter(
    "dicom_node_instances_refused",
    "C-STORE requests answered with a failure status",
    ["status"],
)
ASSOCIATIONS = Counter(
    "dicom_node_associations",
    "Associations requested, by outcome (accepted, rejected by the allow-list, "
    "refused for the association limit)",
    ["outcome"],
)
CONNECTIONS_CLOSED = Counter(
    "dicom_node_connections_closed",
    "Connections closed before they became an association, by reason (pending_limit, "
    "no_request, request_timeout, bad_request, request_too_large, tls_handshake)",
    ["reason"],
)
ASSOCIATIONS_ABORTED = Counter(
    "dicom_node_associations_aborted",
    "Associations that ended without a release, by reason (pdu_too_large, pdu_timeout, "
    "bad_pdu, command_too_large, dataset_too_large, idle_timeout, peer)",
    ["reason"],
)
JOBS_REQUEUED = Counter(
    "dicom_node_jobs_requeued",
    "Analysis jobs sent to the queue again because their message was lost, by state",
    ["state"],
)

_BY_NAME = {
    "associations": ASSOCIATIONS,
    "connections_closed": CONNECTIONS_CLOSED,
    "associations_aborted": ASSOCIATIONS_ABORTED,
    "jobs_requeued": JOBS_REQUEUED,
}
_LABEL = {
    "associations": "outcome",
    "connections_closed": "reason",
    "associations_aborted": "reason",
    "jobs_requeued": "state",
}

for _outcome in ("accepted", "rejected", "limit"):
    ASSOCIATIONS.labels(outcome=_outcome)


def count(name: str, label: str) -> None:
    """Add one to the counter ``name`` (a key of :data:`_BY_NAME`) for ``label``."""
    counter = _BY_NAME.get(name)
    if counter is None:
        raise ValueError(f"unknown listener counter {name!r}")
    counter.labels(**{_LABEL[name]: label}).inc()


def observe(event: RegistryEvent) -> None:
    """Count an instance stored or refused (called for every event the registry receives)."""
    if isinstance(event, InstanceStored):
        INSTANCES_RECEIVED.inc()
        BYTES_RECEIVED.inc(event.size)
    elif isinstance(event, IngestRefused) and event.status is not None:
        INSTANCES_REFUSED.labels(status=f"0x{event.status:04X}").inc()


class _Slots(Collector):
    """Connections waiting for their association request and associations running now."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        pending, active = self.source()
        yield GaugeMetricFamily(
            "dicom_node_connections_pending",
            "Connections waiting for their association request (network.max_pending_connections)",
            value=pending,
        )
        yield GaugeMetricFamily(
            "dicom_node_associations_active",
            "Associations running now, all listener processes (network.max_associations)",
            value=active,
        )


_SLOTS = _Slots()
REGISTRY.register(_SLOTS)


def watch_slots(source: Callable[[], tuple[int, int]]) -> None:
    """Expose the listener's slot counts, read from ``source`` at each scrape."""
    _SLOTS.source = source
