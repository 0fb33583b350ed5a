"""C-STORE of result objects to one destination over one association.

Each SOP class is proposed with the file's own transfer syntax and with the
uncompressed ones; a compressed object whose syntax the peer refuses is
decompressed before sending. Warning statuses (0xB000, 0xB006, 0xB007) count as
stored, as PS3.4 B.2.3 allows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.core.settings import TLSSettings
from dicom_node.dicom.status import STORED_WITH_WARNING, SUCCESS
from dicom_node.network import tls as dicom_tls
from dicom_node.network.association import open_association, requestor

LOGGER = logging.getLogger(__name__)

_STORED = {SUCCESS, *STORED_WITH_WARNING}


@dataclass(frozen=True)
class Target:
    """Where one copy of each object goes."""

    label: str
    ae_title: str
    host: str
    port: int
    tls: bool = False


_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass(frozen=True)
class Item:
    entry_id: int
    path: Path
    sop_class_uid: str
    sop_instance_uid: str


def _accepted(assoc: object, sop_class: str) -> set[str]:
    return {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts  # type: ignore[attr-defined]
        if str(cx.abstract_syntax) == sop_class
    }


def _prepare(ds: Dataset, accepted: set[str]) -> Dataset:
    """``ds`` as it can be sent: pynetdicom re-encodes uncompressed data for the context."""
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    uncompressed_ok = bool(accepted & {str(s) for s in _UNCOMPRESSED})
    if str(syntax) in accepted or (not syntax.is_compressed and uncompressed_ok):
        return ds
    if uncompressed_ok:
        ds.decompress()
        return ds
    raise ValueError(f"the peer accepts no transfer syntax this {syntax.name} object can use")


def send_items(
    calling_ae_title: str,
    target: Target,
    items: Sequence[Item],
    tls: TLSSettings | None = None,
    timeout: float = 30.0,
) -> dict[int, str | None]:
    """Send ``items``; map each entry ID to None (stored) or the error.

    A ``target.tls`` peer is reached over TLS with the certificates of ``tls``.
    """
    ae = requestor(calling_ae_title, timeout)
    syntaxes: dict[str, set[str]] = {}
    datasets: dict[int, Dataset] = {}
    outcome: dict[int, str | None] = {}
    for item in items:
        try:
            read: Dataset = dcmread(item.path)
        except (OSError, ValueError, EOFError) as exc:
            outcome[item.entry_id] = f"cannot read {item.path.name}: {exc}"
            continue
        datasets[item.entry_id] = read
        syntaxes.setdefault(item.sop_class_uid, set()).add(str(read.file_meta.TransferSyntaxUID))
    for sop_class, own in sorted(syntaxes.items()):
        extra = sorted(own - {str(s) for s in _UNCOMPRESSED})
        if extra:
            ae.add_requested_context(sop_class, extra)
        ae.add_requested_context(sop_class, list(_UNCOMPRESSED))
    if not datasets:
        return outcome
    try:
        assoc = open_association(ae, target.host, target.port, target.ae_title, tls, target.tls)
    except dicom_tls.TLSConfigError as exc:
        return {**outcome, **{entry_id: str(exc) for entry_id in datasets}}
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "no association (peer down?)"
        if target.tls and not assoc.is_rejected:
            reason = "no TLS association (peer down or TLS handshake failed?)"
        error = f"{reason}: {target.ae_title} at {target.host}:{target.port}"
        return {**outcome, **{entry_id: error for entry_id in datasets}}
    try:
        for item in items:
            ds: Dataset | None = datasets.get(item.entry_id)
            if ds is None:
                continue
            if not assoc.is_established:
                outcome[item.entry_id] = "the association was lost"
                continue
            try:
                ds = _prepare(ds, _accepted(assoc, item.sop_class_uid))
                status = assoc.send_c_store(ds)
            except (ValueError, RuntimeError, AttributeError) as exc:
                outcome[item.entry_id] = f"not sent: {exc}"
                continue
            code = getattr(status, "Status", None)
            if code in _STORED:
                outcome[item.entry_id] = None
                if code != SUCCESS:
                    LOGGER.warning(
                        "%s stored %s with warning 0x%04X",
                        target.ae_title,
                        item.sop_instance_uid,
                        code,
                    )
            else:
                outcome[item.entry_id] = (
                    "no response (timeout or aborted)"
                    if code is None
                    else f"{target.ae_title} answered status 0x{code:04X}"
                )
    finally:
        if assoc.is_established:
            assoc.release()
    return outcome
