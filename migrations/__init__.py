"""Alembic migrations of the node's database (every revision has a downgrade)."""
