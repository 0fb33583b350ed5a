"""What the viewer tests read: every case analysed once per session by ``dicom-node analyze``.

A case is a CT series and the objects ``dicom-node analyze --json --out`` wrote for
it, with its JSON report (the reference the clients' numbers must match). The
real CTs of ../shared/data are analysed with the node's default engine, as a
PACS-routed series would be; the synthetic variants (see :mod:`.series`), all in
one run, with the HU engine, which is quicker and just as good a test of the
objects' geometry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread

from dicom_node.dicom.codes import EFFUSION_SEGMENT, SEGMENTS, SegmentSpec
from tests.conftest import SHARED_DATA
from tests.integration.orthanc import OrthancProcess, orthanc_available
from tests.integration.support import storescu
from tests.viewers.series import VARIANTS, write_variant

REAL_CASES = ("chest-ct-141", "lidc-0001")
SYNTHETIC_CASES = tuple(v.name for v in VARIANTS)
CASES = [pytest.param(name, marks=pytest.mark.realdata) for name in REAL_CASES] + list(
    SYNTHETIC_CASES
)
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Case:
    """One analysed series: its CT folder and what ``analyze`` reported and wrote."""

    name: str
    ct_dir: Path
    report: dict[str, Any]

    @property
    def ct_paths(self) -> list[Path]:
        return sorted(p for p in self.ct_dir.iterdir() if p.is_file())

    def outputs(self, kind: str) -> list[Path]:
        """The written objects of one kind (seg, sr, key-image, summary)."""
        return [Path(p) for p in self.report["outputs"] if Path(p).name.startswith(f"{kind}-")]

    @property
    def seg(self) -> Path:
        (path,) = self.outputs("seg")
        return path

    @property
    def sr(self) -> Path:
        (path,) = self.outputs("sr")
        return path

    @property
    def segments(self) -> tuple[SegmentSpec, ...]:
        """The segments the node wrote: the five, and the effusion where it found one."""
        if self.report.get("effusion_volume_ml"):
            return (*SEGMENTS, EFFUSION_SEGMENT)
        return SEGMENTS

    @property
    def all_outputs(self) -> list[Path]:
        return [Path(p) for p in self.report["outputs"]]


def seg_frames(seg_path: Path) -> Iterator[tuple[int, str, npt.NDArray[np.bool_]]]:
    """(segment number, referenced CT SOP Instance UID, mask) of every frame of a SEG."""
    seg = dcmread(seg_path)
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns)) > 0
    for item, frame in zip(seg.PerFrameFunctionalGroupsSequence, frames, strict=True):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        yield number, str(uid), frame


def _analyze(folder: Path, out: Path, engine: dict[str, str]) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_NODE_")}
    env.update(engine)
    result = subprocess.run(
        [sys.executable, "-m", "dicom_node", "analyze", str(folder), "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    series: list[dict[str, Any]] = json.loads(result.stdout)["series"]
    for report in series:
        assert report["state"] == "done", report
    return series


class Analyses:
    """Analyses each case the first time a test asks for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: dict[str, Case] = {}

    def _series_uid(self, folder: Path) -> str:
        first = next(p for p in sorted(folder.iterdir()) if p.is_file())
        return str(dcmread(first, stop_before_pixels=True).SeriesInstanceUID)

    def _synthetic(self) -> None:
        folder = self.root / "synthetic"
        for seed, variant in enumerate(VARIANTS, start=41):
            write_variant(variant, folder / variant.name, seed)
        engine = {"DICOM_NODE_ANALYSIS__ENGINE": "hu", "DICOM_NODE_ANALYSIS__CLASSIFIER": "false"}
        reports = {r["series_instance_uid"]: r for r in _analyze(folder, self.root / "out", engine)}
        for variant in VARIANTS:
            ct_dir = folder / variant.name
            report = reports[self._series_uid(ct_dir)]
            self.cases[variant.name] = Case(variant.name, ct_dir, report)

    def _real(self, name: str) -> None:
        ct_dir = SHARED_DATA / name
        if not ct_dir.is_dir():
            pytest.skip(f"real data {ct_dir} is not present (see ../shared/data/README.md)")
        (report,) = _analyze(ct_dir, self.root / "out", {})
        self.cases[name] = Case(name, ct_dir, report)

    def get(self, name: str) -> Case:
        if name not in self.cases:
            if name in REAL_CASES:
                self._real(name)
            else:
                self._synthetic()
        return self.cases[name]


@pytest.fixture(scope="session")
def analyses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analyses]:
    yield Analyses(tmp_path_factory.mktemp("viewers"))


PLUGIN_DIR = Path("/usr/lib/orthanc")


def _plugin() -> Path:
    found = sorted(PLUGIN_DIR.glob("libOrthancDicomWeb.so*"))
    if not found:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    return found[0]


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    if not orthanc_available() or shutil.which("storescu") is None:
        pytest.skip("Orthanc (apt-get install orthanc) and dcmtk's storescu are needed")
    orthanc = OrthancProcess(
        tmp_path_factory.mktemp("dicomweb"),
        aet="DICOMWEB",
        extra_config={
            "Plugins": [str(_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        },
    ).start()
    try:
        yield orthanc
    finally:
        orthanc.stop()


def store(pacs: OrthancProcess, paths: list[Path]) -> None:
    """C-STORE ``paths`` into ``pacs`` with dcmtk's storescu (one association)."""
    sent = storescu(pacs.dicom_port, paths, ae_title=pacs.aet, extra=["--required"])
    assert sent.returncode == 0, sent.stderr[-2000:]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, analyses: Analyses) -> Case:
    return analyses.get(str(request.param))
