from pathlib import Path

import pytest

from dicom_node.dicom.uids import InvalidUID
from dicom_node.ingest.spool import Outcome, Spool


def _incoming(spool: Spool, name: str, data: bytes) -> Path:
    path = spool.incoming / name
    path.write_bytes(data)
    return path


def test_commit_new_identical_and_replaced(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    first = spool.commit(_incoming(spool, "a", b"one"), "1.2", "1.2.3", "1.2.3.4")
    assert first.outcome is Outcome.NEW
    assert first.path == tmp_path / "spool" / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    assert first.path.read_bytes() == b"one"

    again = spool.commit(_incoming(spool, "b", b"one"), "1.2", "1.2.3", "1.2.3.4")
    assert again.outcome is Outcome.IDENTICAL
    assert not (spool.incoming / "b").exists()

    changed = spool.commit(_incoming(spool, "c", b"two!"), "1.2", "1.2.3", "1.2.3.4")
    assert changed.outcome is Outcome.REPLACED
    assert first.path.read_bytes() == b"two!"
    assert list((tmp_path / "spool" / "1.2" / "1.2.3").iterdir()) == [first.path]
    assert list(spool.incoming.iterdir()) == []


@pytest.mark.parametrize(
    ("study", "series", "sop"),
    [("../../x", "1.2", "1.3"), ("1.2", "..", "1.3"), ("1.2", "1.3", "../../../etc/passwd")],
)
def test_malicious_uids_never_become_paths(
    tmp_path: Path, study: str, series: str, sop: str
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    with pytest.raises(InvalidUID):
        spool.commit(_incoming(spool, "x", b"data"), study, series, sop)
    created = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert created == ["spool", "spool/.incoming", "spool/.incoming/x"]


def test_prepare_removes_leftovers_and_sweep(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    _incoming(spool, "left", b"partial")
    spool.prepare()
    assert list(spool.incoming.iterdir()) == []
    _incoming(spool, "fresh", b"partial")
    assert spool.sweep_incoming(older_than_seconds=3600) == 0
    assert spool.sweep_incoming(older_than_seconds=-1) == 1


def test_write_failure_is_a_spool_error(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    with pytest.raises(OSError, match="cannot write"):
        spool.commit(spool.incoming / "missing", "1.2", "1.3", "1.4")
