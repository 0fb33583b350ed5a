"""Serial tracking: scan times on series, progression alerts and their deliveries, prior requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_fk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("series_fk", sa.Integer(), nullable=False),
        sa.Column("prior_series_fk", sa.Integer(), nullable=False),
        sa.Column("interval_hours", sa.Float(), nullable=False),
        sa.Column("growth", sa.Float(), nullable=True),
        sa.Column("infected_volume_ml", sa.Float(), nullable=False),
        sa.Column("prior_infected_volume_ml", sa.Float(), nullable=False),
        sa.Column("poir_percent", sa.Float(), nullable=False),
        sa.Column("prior_poir_percent", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "new", "delivered", "acknowledged", name="alertstate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("acknowledged_by", sa.Text(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_fk"], ["patient.id"], name=op.f("fk_alert_patient_fk_patient")
        ),
        sa.ForeignKeyConstraint(
            ["prior_series_fk"], ["series.id"], name=op.f("fk_alert_prior_series_fk_series")
        ),
        sa.ForeignKeyConstraint(
            ["series_fk"], ["series.id"], name=op.f("fk_alert_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint(
            "series_fk", "prior_series_fk", "kind", name=op.f("uq_alert_series_fk")
        ),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_patient_fk"), ["patient_fk"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_series_fk"), ["series_fk"], unique=False)

    op.create_table(
        "prior_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("for_series_fk", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["for_series_fk"], ["series.id"], name=op.f("fk_prior_request_for_series_fk_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prior_request")),
        sa.UniqueConstraint(
            "series_instance_uid", name=op.f("uq_prior_request_series_instance_uid")
        ),
    )
    op.create_table(
        "alert_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_fk", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
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
            ["alert_fk"], ["alert.id"], name=op.f("fk_alert_delivery_alert_fk_alert")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_delivery")),
        sa.UniqueConstraint("alert_fk", "channel", name=op.f("uq_alert_delivery_alert_fk")),
    )
    with op.batch_alter_table("alert_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_delivery_alert_fk"), ["alert_fk"], unique=False)
        batch_op.create_index("ix_alert_delivery_due", ["state", "next_attempt_at"], unique=False)

    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scan_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("scan_time_source", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tracking_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("tracking_note")
        batch_op.drop_column("scan_time_source")
        batch_op.drop_column("scan_time")

    with op.batch_alter_table("alert_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_delivery_due")
        batch_op.drop_index(batch_op.f("ix_alert_delivery_alert_fk"))

    op.drop_table("alert_delivery")
    op.drop_table("prior_request")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_series_fk"))
        batch_op.drop_index(batch_op.f("ix_alert_patient_fk"))
        batch_op.drop_index(batch_op.f("ix_alert_created_at"))

    op.drop_table("alert")
