"""The node's database: patients, studies, series, instances, analysis jobs and results.

Attribute names follow the DICOM attributes they hold (PS3.3 C.7.1.1 Patient,
C.7.2.1 General Study, C.7.3.1 General Series, C.12.1 SOP Common).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; use timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _states(states: type[enum.StrEnum]) -> Enum:
    """A state column: the enum's values in a short VARCHAR (no database enum type)."""
    return Enum(
        states,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobState(enum.StrEnum):
    """States of an analysis job.

    receiving -> complete -> queued -> running -> done
    receiving -> incomplete (held: an association that carried the series was cut
    short; new instances re-open it)
    complete -> rejected (not eligible); running -> rejected (no lungs, bad volume)
    complete/queued/running -> failed (with a reason)
    """

    RECEIVING = "receiving"
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.REJECTED)


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(Text)
    issuer_of_patient_id: Mapped[str] = mapped_column(Text, default="")
    patient_name: Mapped[str | None] = mapped_column(Text)
    patient_birth_date: Mapped[str | None] = mapped_column(Text)
    patient_sex: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_fk: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    study_date: Mapped[str | None] = mapped_column(Text)
    study_time: Mapped[str | None] = mapped_column(Text)
    accession_number: Mapped[str | None] = mapped_column(Text)
    study_description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    patient: Mapped[Patient | None] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    modality: Mapped[str | None] = mapped_column(Text)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(Text)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # who sent it (the last association that carried an instance): for "return to sender"
    source_ae_title: Mapped[str | None] = mapped_column(Text)
    source_address: Mapped[str | None] = mapped_column(Text)
    # serial tracking: when the scan was acquired (UTC), from which attribute, and why
    # it is not compared with the patient's other scans (when it is not)
    scan_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scan_time_source: Mapped[str | None] = mapped_column(Text)
    tracking_note: Mapped[str | None] = mapped_column(Text)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")
    jobs: Mapped[list[AnalysisJob]] = relationship(
        back_populates="series", order_by="AnalysisJob.id"
    )


class Instance(Base):
    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer)
    calling_ae_title: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")


class AnalysisJob(Base):
    """One analysis of one series as received up to a point in time.

    Instances arriving after a job left ``receiving`` open a new job; the
    result of the newest finished job is the series' current result.
    """

    __tablename__ = "analysis_job"
    __table_args__ = (Index("ix_analysis_job_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    state: Mapped[JobState] = mapped_column(_states(JobState), default=JobState.RECEIVING)
    reason: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(32))
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    first_instance_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_instance_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    series: Mapped[Series] = relationship(back_populates="jobs")
    result: Mapped[AnalysisResult | None] = relationship(back_populates="job")


class AnalysisResult(Base):
    __tablename__ = "analysis_result"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_fk: Mapped[int] = mapped_column(ForeignKey("analysis_job.id"), unique=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    lung_volume_ml: Mapped[float] = mapped_column(Float)
    right_lung_volume_ml: Mapped[float] = mapped_column(Float)
    left_lung_volume_ml: Mapped[float] = mapped_column(Float)
    infected_volume_ml: Mapped[float] = mapped_column(Float)
    poir_percent: Mapped[float] = mapped_column(Float)
    #: pleural effusion, not counted as infection (null: measured before the node looked for it)
    effusion_volume_ml: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(32))
    method_version: Mapped[str] = mapped_column(String(32))
    slice_count: Mapped[int] = mapped_column(Integer)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    job: Mapped[AnalysisJob] = relationship(back_populates="result")


class IngestFailure(Base):
    """Something the listener refused, with the DIMSE status it answered."""

    __tablename__ = "ingest_failure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # Free text: what a peer sent may break every length rule.
    calling_ae_title: Mapped[str | None] = mapped_column(Text)
    peer_address: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    study_instance_uid: Mapped[str | None] = mapped_column(Text)
    series_instance_uid: Mapped[str | None] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(Text)
    sop_class_uid: Mapped[str | None] = mapped_column(Text)


class DeliveryState(enum.StrEnum):
    """Where a delivery (a result object to a destination, an alert to a channel) stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutputObject(Base):
    """A DICOM object the node wrote about an analysed series (SEG, SR, key image, summary)."""

    __tablename__ = "output_object"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_fk: Mapped[int] = mapped_column(ForeignKey("analysis_job.id"), index=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeliveryColumns:
    """Columns of everything delivered with retries (see :mod:`dicom_node.delivery.retry`)."""

    state: Mapped[DeliveryState] = mapped_column(
        _states(DeliveryState), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxEntry(DeliveryColumns, Base):
    """One object to deliver to one destination, with its retry state."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("output_fk", "ae_title", "host", "port"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_fk: Mapped[int] = mapped_column(ForeignKey("output_object.id"), index=True)
    destination: Mapped[str] = mapped_column(Text)
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(Text)
    port: Mapped[int] = mapped_column(Integer)

    output: Mapped[OutputObject] = relationship()


class AlertState(enum.StrEnum):
    NEW = "new"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"


class Alert(Base):
    """A progression finding: a later scan against an earlier one of the same patient."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("series_fk", "prior_series_fk", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    prior_series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    interval_hours: Mapped[float] = mapped_column(Float)
    growth: Mapped[float | None] = mapped_column(Float)
    infected_volume_ml: Mapped[float] = mapped_column(Float)
    prior_infected_volume_ml: Mapped[float] = mapped_column(Float)
    poir_percent: Mapped[float] = mapped_column(Float)
    prior_poir_percent: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[AlertState] = mapped_column(_states(AlertState), default=AlertState.NEW)
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    patient: Mapped[Patient] = relationship()
    series: Mapped[Series] = relationship(foreign_keys=[series_fk])
    prior_series: Mapped[Series] = relationship(foreign_keys=[prior_series_fk])


class AlertDelivery(DeliveryColumns, Base):
    """One alert to one channel (webhook, e-mail, HL7), with its retry state."""

    __tablename__ = "alert_delivery"
    __table_args__ = (
        UniqueConstraint("alert_fk", "channel"),
        Index("ix_alert_delivery_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_fk: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    channel: Mapped[str] = mapped_column(String(64))

    alert: Mapped[Alert] = relationship()


class PriorRequest(Base):
    """A series the node asked the PACS for as a prior scan (C-MOVE).

    Such a series is analysed like any other but does not itself trigger a
    query for its own priors, so that one query never cascades back in time.
    """

    __tablename__ = "prior_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    for_series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str | None] = mapped_column(Text)


class RevokedSession(Base):
    """A dashboard session ended by logging out: its cookie is refused until it would expire."""

    __tablename__ = "revoked_session"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
