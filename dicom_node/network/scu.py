"""A small Storage SCU, used by ``dicom-node send`` and the demo."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from dicom_node.core.settings import TLSSettings
from dicom_node.dicom.status import SUCCESS
from dicom_node.network import tls as dicom_tls
from dicom_node.network.association import open_association, requestor

LOGGER = logging.getLogger(__name__)


class SendError(RuntimeError):
    """The association could not be made or broke off."""


@dataclass(frozen=True)
class SendReport:
    sent: int
    failed: list[tuple[Path, str]]


def send_files(
    paths: Sequence[Path],
    host: str,
    port: int,
    called_ae_title: str,
    calling_ae_title: str = "DICOM_NODE_SCU",
    tls: TLSSettings | None = None,
    *,
    timeout_seconds: float | None = None,
) -> SendReport:
    """C-STORE every file over one association; report the ones that did not succeed.

    With ``tls``, the association is made over TLS with those certificates.
    ``timeout_seconds`` bounds the association request, each response and any
    silence of the peer (pynetdicom's defaults without it): a peer that holds an
    instance longer is given up on, and that instance and the rest are reported.
    """
    datasets = [(path, dcmread(path)) for path in paths]
    ae = requestor(calling_ae_title, timeout_seconds)
    contexts = sorted(
        {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets}
    )
    if len(contexts) > 128:
        raise SendError("more than 128 SOP class / transfer syntax combinations")
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    try:
        assoc = open_association(ae, host, port, called_ae_title, tls, tls is not None)
    except dicom_tls.TLSConfigError as exc:
        raise SendError(str(exc)) from exc
    if not assoc.is_established:
        over = " over TLS" if tls is not None else ""
        raise SendError(f"no association{over} with {called_ae_title} at {host}:{port}")
    failed: list[tuple[Path, str]] = []
    try:
        for index, (path, ds) in enumerate(datasets):
            if not assoc.is_established:
                # the peer aborted, or did not answer in time: the rest was not sent
                failed.extend((rest, "association lost") for rest, _ in datasets[index:])
                break
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code != SUCCESS:
                failed.append((path, "no response" if code is None else f"status 0x{code:04X}"))
    finally:
        assoc.release()
    return SendReport(len(datasets) - len(failed), failed)
