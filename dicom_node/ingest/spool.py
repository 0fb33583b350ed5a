"""The durable spool: ``spool/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``.

An instance is written to a temporary file in ``spool/.incoming`` (the same
file system), flushed to the disk with ``fsync`` and renamed into place; the
directory entry is made durable with an ``fsync`` of its directory. Only then
may the C-STORE response report success.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dicom_node.core.files import fsync_path
from dicom_node.dicom.uids import check_uid

LOGGER = logging.getLogger(__name__)

INCOMING = ".incoming"
#: Acknowledged instances the database refused to record (listed as refusals with the reason)
QUARANTINE = ".quarantine"
_COMPARE_CHUNK = 1 << 20


class SpoolError(OSError):
    """Writing to the spool failed (disk full, I/O error, permissions)."""


class Outcome(enum.Enum):
    NEW = "new"
    IDENTICAL = "identical"
    REPLACED = "replaced"


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    outcome: Outcome


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk_a = fa.read(_COMPARE_CHUNK)
            if chunk_a != fb.read(_COMPARE_CHUNK):
                return False
            if not chunk_a:
                return True


class Spool:
    """Maps UIDs to paths below ``root`` and commits received files durably."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / INCOMING

    def prepare(self) -> None:
        """Create the spool and remove files left in ``.incoming`` by a crash."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self.incoming.iterdir():
            LOGGER.warning("Removing incomplete transfer %s left by an earlier run", leftover.name)
            leftover.unlink(missing_ok=True)

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        study = check_uid(study_uid, "StudyInstanceUID")
        series = check_uid(series_uid, "SeriesInstanceUID")
        return self.root / study / series

    def path_for(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        sop = check_uid(sop_instance_uid, "SOPInstanceUID")
        return self.series_dir(study_uid, series_uid) / f"{sop}.dcm"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` (two levels below the root) durably."""
        if directory.is_dir():
            return
        created: list[Path] = []
        for level in (directory.parent, directory):
            if not level.is_dir():
                level.mkdir(exist_ok=True)
                created.append(level)
        for level in created:
            fsync_path(level.parent, directory=True)

    def commit(
        self, temporary: Path, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> StoredFile:
        """Durably move ``temporary`` (in this file system) to its place in the spool.

        A file identical to the one already stored is dropped and reported as
        :attr:`Outcome.IDENTICAL`; a different one replaces it.
        """
        target = self.path_for(study_uid, series_uid, sop_instance_uid)
        try:
            fsync_path(temporary)
            size = temporary.stat().st_size
            self._make_dirs(target.parent)
            outcome = Outcome.NEW
            if target.exists():
                if _same_content(temporary, target):
                    temporary.unlink()
                    return StoredFile(target, size, Outcome.IDENTICAL)
                outcome = Outcome.REPLACED
            temporary.replace(target)
            fsync_path(target.parent, directory=True)
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
        return StoredFile(target, size, outcome)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def quarantine(self, relative: str) -> str:
        """Move a spooled file out of the way of the start-up check; return where it went.

        Used for an instance that was acknowledged but that the database refused
        to record: it is kept (never deleted) where the start-up check does not
        try to register it again.
        """
        source = self.root / relative
        target_dir = self.root / QUARANTINE
        target = target_dir / relative.replace("/", "_")
        try:
            target_dir.mkdir(exist_ok=True)
            source.replace(target)
            fsync_path(target_dir, directory=True)
        except OSError as exc:
            LOGGER.error("Cannot move %s to the quarantine (%s); left in place", relative, exc)
            return relative
        return self.relative(target)

    def sweep_incoming(self, older_than_seconds: float) -> int:
        """Remove abandoned temporary files (aborted transfers); return how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for leftover in self.incoming.iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
