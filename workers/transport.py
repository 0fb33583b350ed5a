"""The embedded queue: kombu's SQLAlchemy transport on a SQLite file, tuned for the node.

Differences from kombu's transport:

- the engine is made like the node's own (WAL journal, a busy timeout), so
  the node and the worker process can use the file at the same time;
- a message is deleted when it is taken instead of being hidden for ever,
  so the table does not grow without bound;
- it polls ten times a second (a waiting analysis starts within 0.1 s).

A message taken by a worker that then dies is gone from this queue, as with
kombu's transport; the node re-sends every unfinished job from the database
when it starts (:func:`dicom_node.jobs.states.recover`), which is what makes jobs
survive a restart.
"""

from __future__ import annotations

from json import loads
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from dicom_node.db.engine import make_engine

SCHEME = "dicomnode"


class Channel(SqlaChannel):  # type: ignore[misc]
    def _open(self) -> Any:
        url = self.connection.client.hostname
        if url not in self._engines:
            engine = make_engine(url)
            self.queue_cls  # noqa: B018 - declares the model classes before create_all
            self.message_cls  # noqa: B018
            from kombu.transport.sqlalchemy.models import metadata

            metadata.create_all(engine)
            self._engines[url] = engine, sessionmaker(bind=engine)
        return self._engines[url]

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        obj = self._get_or_create(queue)
        self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                self.session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible != False)  # noqa: E712
                .order_by(self.message_cls.sent_at)
                .order_by(self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            payload = loads(bytes_to_str(msg.payload))
            self.session.delete(msg)
            return payload
        finally:
            self.session.commit()


class Transport(SqlaTransport):  # type: ignore[misc]
    Channel = Channel
    polling_interval = 0.1


def register() -> None:
    """Make ``dicomnode+sqlite:///...`` URLs use this transport."""
    TRANSPORT_ALIASES[SCHEME] = "workers.transport:Transport"
