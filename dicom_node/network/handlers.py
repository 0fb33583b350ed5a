"""pynetdicom event handlers: association policy, C-ECHO and C-STORE.

The C-STORE handler only checks the received instance, commits it to the
spool and tells the registry; it never touches the database or the queue
itself, so that a slow database cannot stall a sending PACS. Every failure is
answered with a specific status (PS3.4 B.2.3) and logged with the UIDs, never
with the patient's name.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom.uid import UID

from dicom_node.core.logs import uids
from dicom_node.core.settings import CallingAE
from dicom_node.dicom.status import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from dicom_node.dicom.uids import InvalidUID
from dicom_node.ingest.events import IngestRefused, InstanceStored
from dicom_node.ingest.inspect import InspectLimits, StoreRefused, inspect_instance
from dicom_node.ingest.spool import Outcome, Spool, SpoolError
from dicom_node.network.frontdoor import Report, association_id, count_resource_refusal
from dicom_node.network.pdu import SpoolFile, is_disk_full

LOGGER = logging.getLogger(__name__)

# A-ASSOCIATE-RJ: rejected-permanent, DUL service-user, calling AE title not recognised
_REJECT_CALLING_AE = (0x01, 0x01, 0x03)


def _sop_name(uid: str) -> str:
    return UID(uid).name if UID(uid).is_valid else uid


def _peer(assoc: Any) -> tuple[str, str]:
    """The calling AE title and address; the title is read from the A-ASSOCIATE-RQ
    itself, since pynetdicom copies it to ``requestor.ae_title`` only later."""
    requestor = assoc.requestor
    primitive = getattr(requestor, "primitive", None)
    title = getattr(primitive, "calling_ae_title", None) or requestor.ae_title
    return str(title).strip(), str(requestor.address)


def resolve_callers(callers: Iterable[CallingAE]) -> dict[str, set[str] | None]:
    """Map each allowed calling AE title to the addresses it may come from (None: any)."""
    allowed: dict[str, set[str] | None] = {}
    for caller in callers:
        if caller.host is None:
            allowed[caller.ae_title] = None
            continue
        try:
            infos = socket.getaddrinfo(caller.host, None)
        except socket.gaierror as exc:
            raise ValueError(
                f"allowed_callers: host {caller.host!r} of {caller.ae_title!r} "
                f"cannot be resolved ({exc})"
            ) from exc
        addresses = {str(info[4][0]) for info in infos}
        current = allowed.get(caller.ae_title, set())
        if current is not None:
            allowed[caller.ae_title] = current | addresses
    return allowed


class AssociationPolicy:
    """Accepts only the configured calling AE titles (each optionally bound to hosts)."""

    def __init__(self, allowed: dict[str, set[str] | None], report: Report) -> None:
        self._allowed = allowed
        self._report = report

    def on_requested(self, event: Any) -> None:
        if not self._allowed:
            return
        calling, address = _peer(event.assoc)
        if calling in self._allowed:
            hosts = self._allowed[calling]
            if hosts is None or address in hosts:
                return
            reason = f"calling AE title {calling!r} is not allowed from {address}"
        else:
            reason = f"calling AE title {calling!r} is not in the allow-list"
        LOGGER.warning("Rejecting association from %s: %s", address, reason)
        self._report.count("associations", "rejected")
        self._report.event(
            IngestRefused(reason, None, calling, address, occurred_at=datetime.now(UTC))
        )
        event.assoc.acse.send_reject(*_REJECT_CALLING_AE)
        event.assoc.kill()

    def on_accepted(self, event: Any) -> None:
        """Log the refused presentation contexts; store a refusal when nothing was accepted.

        SCUs such as storescu propose every storage class they know, so a refused
        context is normal; but an association in which no SOP class was
        accepted (an MR series routed here by mistake) is worth an operator's look.
        """
        self._report.count("associations", "accepted")
        calling, address = _peer(event.assoc)
        refused = sorted({str(cx.abstract_syntax) for cx in event.assoc.rejected_contexts})
        accepted = {str(cx.abstract_syntax) for cx in event.assoc.accepted_contexts}
        LOGGER.info(
            "Association accepted from %s at %s (%d SOP class(es) accepted, %d refused)",
            calling,
            address,
            len(accepted),
            len(refused),
        )
        if refused and not accepted:
            names = ", ".join(f"{_sop_name(uid)} ({uid})" for uid in refused)
            reason = f"no proposed SOP class is accepted by this node: {names}"
            LOGGER.warning("Association from %s at %s: %s", calling, address, reason)
            self._report.event(
                IngestRefused(
                    reason,
                    None,
                    calling,
                    address,
                    sop_class_uid=refused[0],
                    occurred_at=datetime.now(UTC),
                )
            )


def handle_echo(event: Any) -> int:
    return SUCCESS


class StoreHandler:
    """Validates a received instance, spools it durably, then reports success."""

    def __init__(
        self, spool: Spool, report: Report, min_free_bytes: int, limits: InspectLimits
    ) -> None:
        self._spool = spool
        self._report = report
        self._min_free_bytes = min_free_bytes
        self._limits = limits

    def __call__(self, event: Any) -> int:
        request = event.request
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        calling, address = _peer(event.assoc)
        try:
            return self._store(event, sop_class, sop_instance, calling, address)
        except StoreRefused as refused:
            LOGGER.warning(
                "Refused instance %s (SOP class %s) from %s at %s with status 0x%04X: %s",
                sop_instance,
                sop_class,
                calling,
                address,
                refused.status,
                refused.reason,
                extra=uids(sop=sop_instance),
            )
            if refused.status & 0xFF00 == OUT_OF_RESOURCES:
                count_resource_refusal(event.assoc)
            self._report.event(
                IngestRefused(
                    refused.reason,
                    refused.status,
                    calling,
                    address,
                    sop_instance_uid=sop_instance,
                    sop_class_uid=sop_class,
                    occurred_at=datetime.now(UTC),
                )
            )
            return refused.status

    def _store(
        self, event: Any, sop_class: str, sop_instance: str, calling: str, address: str
    ) -> int:
        try:
            free = self._spool.free_bytes()
        except OSError as exc:
            raise StoreRefused(OUT_OF_RESOURCES, f"cannot check free disk space: {exc}") from exc
        if free < self._min_free_bytes:
            raise StoreRefused(
                OUT_OF_RESOURCES,
                f"free disk space {free // 2**20} MiB is below the floor of "
                f"{self._min_free_bytes // 2**20} MiB",
            )
        spooled = getattr(event.request, "_dataset_file", None)
        if isinstance(spooled, SpoolFile) and spooled.error is not None:
            error = spooled.error
            what = "the disk filled" if is_disk_full(error) else "writing failed"
            raise StoreRefused(
                OUT_OF_RESOURCES, f"{what} while the instance was received: {error.strerror}"
            )
        received: Path = event.dataset_path
        header = inspect_instance(
            received,
            expected_sop_class=sop_class,
            expected_sop_instance=sop_instance,
            limits=self._limits,
        )
        try:
            stored = self._spool.commit(
                received,
                header.study_instance_uid,
                header.series_instance_uid,
                header.sop_instance_uid,
            )
        except InvalidUID as exc:  # pragma: no cover - checked by inspect_instance already
            raise StoreRefused(CANNOT_UNDERSTAND, str(exc)) from exc
        except SpoolError as exc:
            raise StoreRefused(OUT_OF_RESOURCES, f"writing to the spool failed: {exc}") from exc
        if stored.outcome is Outcome.REPLACED:
            LOGGER.warning(
                "Instance %s of series %s (study %s) was received again with different "
                "content; the new one replaces the old",
                header.sop_instance_uid,
                header.series_instance_uid,
                header.study_instance_uid,
            )
        elif stored.outcome is Outcome.IDENTICAL:
            LOGGER.info(
                "Instance %s of series %s received again, identical; kept once",
                header.sop_instance_uid,
                header.series_instance_uid,
            )
        self._report.event(
            InstanceStored(
                association_id=association_id(event.assoc),
                calling_ae_title=calling,
                header=header,
                path=self._spool.relative(stored.path),
                size=stored.size,
                outcome=stored.outcome,
                received_at=datetime.now(UTC),
                peer_address=address,
            )
        )
        return SUCCESS
