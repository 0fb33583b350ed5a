"""Raw DICOM Upper Layer PDUs (PS3.8 9.3), written by hand so that tests can break them."""

from __future__ import annotations

import socket
import struct
import time

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
ECHO_CONTEXT = 1
STORE_CONTEXT = 3


def _uid(uid: str) -> bytes:
    data = uid.encode()
    return data + b"\0" if len(data) % 2 else data


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def associate_rq(
    called: str = "TEST_NODE", calling: str = "FUZZER", max_length: int = 16384
) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification (context 1) and CT Image Storage (3)."""
    contexts = b""
    for context_id, abstract, syntaxes in (
        (ECHO_CONTEXT, VERIFICATION, [ImplicitVRLittleEndian]),
        (STORE_CONTEXT, CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
    ):
        sub = _item(0x30, _uid(abstract)) + b"".join(_item(0x40, _uid(s)) for s in syntaxes)
        contexts += _item(0x20, bytes([context_id, 0, 0, 0]) + sub)
    user = _item(0x51, struct.pack(">L", max_length)) + _item(0x52, _uid("1.2.826.0.1.3680043.9"))
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling.ljust(16).encode()
        + b"\0" * 32
        + _item(0x10, _uid(APPLICATION_CONTEXT))
        + contexts
        + _item(0x50, user)
    )
    return pdu(0x01, body)


def _command(fields: Dataset) -> bytes:
    """A DIMSE command set (Implicit VR Little Endian, with its group length)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, fields)
    body = buffer.getvalue()
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    """A P-DATA-TF with one PDV (control: bit 0 command, bit 1 last fragment)."""
    return pdu(0x04, struct.pack(">LBB", len(data) + 2, context_id, control) + data)


def echo_rq(message_id: int = 1) -> bytes:
    command = Dataset()
    command.AffectedSOPClassUID = VERIFICATION
    command.CommandField = 0x0030
    command.MessageID = message_id
    command.CommandDataSetType = 0x0101
    return p_data(ECHO_CONTEXT, 0x03, _command(command))


def store_rq(sop_instance_uid: str, dataset: bytes, message_id: int = 1) -> list[bytes]:
    """A C-STORE-RQ: its command PDU, then the dataset in one last fragment."""
    command = Dataset()
    command.AffectedSOPClassUID = CTImageStorage
    command.CommandField = 0x0001
    command.MessageID = message_id
    command.Priority = 0
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = sop_instance_uid
    return [p_data(STORE_CONTEXT, 0x03, _command(command)), p_data(STORE_CONTEXT, 0x02, dataset)]


RELEASE_RQ = pdu(0x05, b"\0" * 4)


def ds_bytes(ds: Dataset) -> bytes:
    """The dataset as sent in a C-STORE (Explicit VR Little Endian, no file meta)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """What the peer sends until it closes (and after how many seconds), or until ``timeout``."""
    start = time.monotonic()
    received = b""
    while True:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            return received, None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return received, None
        except ConnectionResetError:
            return received, time.monotonic() - start
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def read_pdu(sock: socket.socket, timeout: float = 5.0) -> tuple[int, bytes]:
    """One PDU from the peer: (type, body)."""
    sock.settimeout(timeout)
    header = b""
    while len(header) < 6:
        chunk = sock.recv(6 - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    pdu_type, _, length = struct.unpack(">BBL", header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return pdu_type, body


def dimse_status(p_data_body: bytes) -> int | None:
    """The Status (0000,0900) of a DIMSE response command in a P-DATA-TF body."""
    offset = 6  # PDV length (4), context (1), control (1)
    data = p_data_body[offset:]
    position = 0
    while position + 8 <= len(data):
        group, element, length = struct.unpack("<HHL", data[position : position + 8])
        value = data[position + 8 : position + 8 + length]
        if (group, element) == (0x0000, 0x0900) and length == 2:
            return int(struct.unpack("<H", value)[0])
        position += 8 + length
    return None
