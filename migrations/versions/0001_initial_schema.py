"""Initial schema: patient, study, series, instance, analysis job and result, ingest failures.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calling_ae_title", sa.Text(), nullable=True),
        sa.Column("peer_address", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("study_instance_uid", sa.Text(), nullable=True),
        sa.Column("series_instance_uid", sa.Text(), nullable=True),
        sa.Column("sop_instance_uid", sa.Text(), nullable=True),
        sa.Column("sop_class_uid", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_failure")),
    )
    with op.batch_alter_table("ingest_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_failure_occurred_at"), ["occurred_at"], unique=False
        )

    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("issuer_of_patient_id", sa.Text(), nullable=False),
        sa.Column("patient_name", sa.Text(), nullable=True),
        sa.Column("patient_birth_date", sa.Text(), nullable=True),
        sa.Column("patient_sex", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint(
            "patient_id", "issuer_of_patient_id", name=op.f("uq_patient_patient_id")
        ),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_fk", sa.Integer(), nullable=True),
        sa.Column("study_date", sa.Text(), nullable=True),
        sa.Column("study_time", sa.Text(), nullable=True),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_fk"], ["patient.id"], name=op.f("fk_study_patient_fk_patient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_study_study_instance_uid")),
    )
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_patient_fk"), ["patient_fk"], unique=False)

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.Text(), nullable=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_fk"], ["study.id"], name=op.f("fk_series_study_fk_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_study_fk"), ["study_fk"], unique=False)

    op.create_table(
        "analysis_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "receiving",
                "complete",
                "queued",
                "running",
                "done",
                "failed",
                "rejected",
                name="jobstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("engine", sa.String(length=32), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("first_instance_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_instance_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_analysis_job_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_job")),
    )
    with op.batch_alter_table("analysis_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analysis_job_series_fk"), ["series_fk"], unique=False)
        batch_op.create_index("ix_analysis_job_state", ["state"], unique=False)

    op.create_table(
        "instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_instance_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instance_sop_instance_uid")),
    )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instance_series_fk"), ["series_fk"], unique=False)

    op.create_table(
        "analysis_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_fk", sa.Integer(), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column("lung_volume_ml", sa.Float(), nullable=False),
        sa.Column("right_lung_volume_ml", sa.Float(), nullable=False),
        sa.Column("left_lung_volume_ml", sa.Float(), nullable=False),
        sa.Column("infected_volume_ml", sa.Float(), nullable=False),
        sa.Column("poir_percent", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("method_version", sa.String(length=32), nullable=False),
        sa.Column("slice_count", sa.Integer(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_fk"], ["analysis_job.id"], name=op.f("fk_analysis_result_job_fk_analysis_job")
        ),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_analysis_result_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_result")),
        sa.UniqueConstraint("job_fk", name=op.f("uq_analysis_result_job_fk")),
    )
    with op.batch_alter_table("analysis_result", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_result_series_fk"), ["series_fk"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("analysis_result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_result_series_fk"))

    op.drop_table("analysis_result")
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_series_fk"))

    op.drop_table("instance")
    with op.batch_alter_table("analysis_job", schema=None) as batch_op:
        batch_op.drop_index("ix_analysis_job_state")
        batch_op.drop_index(batch_op.f("ix_analysis_job_series_fk"))

    op.drop_table("analysis_job")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_study_fk"))

    op.drop_table("series")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_patient_fk"))

    op.drop_table("study")
    op.drop_table("patient")
    with op.batch_alter_table("ingest_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_failure_occurred_at"))

    op.drop_table("ingest_failure")
