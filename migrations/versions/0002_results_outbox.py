"""Result objects (SEG, SR, key images) and their delivery outbox; who sent each series.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "output_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_fk", sa.Integer(), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_fk"], ["analysis_job.id"], name=op.f("fk_output_object_job_fk_analysis_job")
        ),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_output_object_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_output_object")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_output_object_sop_instance_uid")),
    )
    with op.batch_alter_table("output_object", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_output_object_job_fk"), ["job_fk"], unique=False)
        batch_op.create_index(batch_op.f("ix_output_object_series_fk"), ["series_fk"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("output_fk", sa.Integer(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "sent", "failed", name="outboxstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["output_fk"], ["output_object.id"], name=op.f("fk_outbox_output_fk_output_object")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint(
            "output_fk", "ae_title", "host", "port", name=op.f("uq_outbox_output_fk")
        ),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_output_fk"), ["output_fk"], unique=False)

    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ae_title", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source_address", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("source_address")
        batch_op.drop_column("source_ae_title")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_output_fk"))
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox")
    with op.batch_alter_table("output_object", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_output_object_series_fk"))
        batch_op.drop_index(batch_op.f("ix_output_object_job_fk"))

    op.drop_table("output_object")
