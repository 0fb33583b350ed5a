"""The web dashboard, Prometheus metrics and health endpoints (see docs/dashboard.md)."""
