"""Database access: ORM models, engine creation, migrations and queries."""
