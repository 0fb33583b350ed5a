"""Sending result objects to the PACS: a durable outbox and a C-STORE sender."""
