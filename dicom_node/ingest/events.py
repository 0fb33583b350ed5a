"""What the listener tells the series registry: frozen records, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dicom_node.ingest.spool import Outcome


@dataclass(frozen=True)
class InstanceHeader:
    """The identifying attributes of a received instance (PS3.3 C.7.1-C.7.3, C.12.1)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    modality: str
    series_number: int | None
    series_description: str
    instance_number: int | None
    # where the slice lies (PS3.3 C.7.6.2), for telling a complete stack at once
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    images_in_acquisition: int | None = None
    number_of_frames: int | None = None


@dataclass(frozen=True)
class InstanceStored:
    """An instance is durably in the spool (``path`` relative to the spool root)."""

    association_id: int
    calling_ae_title: str
    header: InstanceHeader
    path: str
    size: int
    outcome: Outcome
    received_at: datetime
    peer_address: str = ""


@dataclass(frozen=True)
class AssociationClosed:
    """An association ended (released, aborted or the connection dropped).

    ``interrupted`` says why the series it carried may be incomplete (the
    sender aborted, the connection dropped mid-transfer, instances were refused
    for lack of resources); None when it ended cleanly.
    """

    association_id: int
    interrupted: str | None = None


@dataclass(frozen=True)
class IngestRefused:
    """The listener refused an association, a presentation context or an instance."""

    reason: str
    status: int | None = None
    calling_ae_title: str | None = None
    peer_address: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    occurred_at: datetime | None = None


RegistryEvent = InstanceStored | AssociationClosed | IngestRefused
