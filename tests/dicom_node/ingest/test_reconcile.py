"""The start-up check: spooled instances the database lacks are registered, one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dicom_node.db.models import IngestFailure, Instance
from dicom_node.ingest import reconcile
from dicom_node.ingest.reconcile import reconcile_spool
from dicom_node.ingest.spool import Spool
from tests.dicom_node.db.test_db import sessions
from tests.factories import ct_slice

__all__ = ["sessions"]  # the fixture


def _spooled(spool: Spool, count: int) -> list[str]:
    study, series = generate_uid(), generate_uid()
    sops = []
    for z in range(count):
        ds = ct_slice(study_uid=study, series_uid=series, position=(0, 0, z))
        ds.PatientName = "Secret^Reconciled"
        path = spool.path_for(study, series, str(ds.SOPInstanceUID))
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        sops.append(str(ds.SOPInstanceUID))
    return sops


def test_a_file_the_database_refuses_does_not_stop_the_start(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    first, poison, last = _spooled(spool, 3)
    real = reconcile.record_instance

    def refuse_poison(session: Session, event: Any) -> None:
        if event.header.sop_instance_uid == poison:
            raise IntegrityError("INSERT", {"name": "Secret^Reconciled"}, Exception("Key (x)=(y)"))
        real(session, event)

    monkeypatch.setattr(reconcile, "record_instance", refuse_poison)
    assert reconcile_spool(spool, sessions) == 2
    with sessions() as session:
        assert set(session.scalars(select(Instance.sop_instance_uid))) == {first, last}
        (failure,) = session.scalars(select(IngestFailure)).all()
    assert failure.sop_instance_uid == poison
    assert "the file is kept as .quarantine/" in failure.reason
    quarantined = list((spool.root / ".quarantine").iterdir())
    assert [p.name.endswith(f"{poison}.dcm") for p in quarantined] == [True]
    assert "Secret" not in caplog.text and "Key (x)" not in caplog.text
    # the next start finds nothing left to register, and the quarantine is not rescanned
    monkeypatch.setattr(reconcile, "record_instance", real)
    assert reconcile_spool(spool, sessions) == 0


def test_unreadable_files_are_left_in_place(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    (good,) = _spooled(spool, 1)
    broken = spool.path_for(generate_uid(), generate_uid(), generate_uid())
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    assert reconcile_spool(spool, sessions) == 1
    assert broken.exists()
    with sessions() as session:
        assert list(session.scalars(select(Instance.sop_instance_uid))) == [good]
