"""Counters of the DICOM listener, in the process that runs it (Prometheus client).

Incremented by the association and C-STORE handlers (a few hundred
nanoseconds each) and exposed with the database-derived metrics at
``/metrics`` (:mod:`dicom_node.web.metrics`). They count from the start of
the process, as Prometheus counters do.
"""

from __future__ import annotations

from prometheus_client import Counter

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
    "Associations requested, by outcome (accepted or rejected by the allow-list)",
    ["outcome"],
)

for _outcome in ("accepted", "rejected"):
    ASSOCIATIONS.labels(outcome=_outcome)
