"""bootstrap-labels: the HU baseline's masks as a SEG, read back as training data."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydicom import dcmread

from dicom_node.cli.main import main
from models.datasets.sources import iter_volumes, load_description
from models.phantoms.chest import PhantomSpec, make_phantom
from models.phantoms.series import PatientInfo, write_series
from tests.dicom_node.results.test_write import ACCEPTED_WARNINGS
from workers.pipeline.compose import analyse_files
from workers.pipeline.params import HUParameters
from workers.tools.bootstrap import BOOTSTRAP_DESCRIPTION


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct")
    phantom = make_phantom(
        PhantomSpec(
            rows=160,
            columns=160,
            pixel_spacing_mm=2.4,
            slice_thickness_mm=10.0,
            z_extent_mm=250.0,
            lesion_volume_ml=400.0,
            seed=5,
        )
    )
    write_series(
        phantom,
        folder,
        patient=PatientInfo("BOOT-1", "Boot^Strap"),
        study_datetime=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    return folder


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_NODE_DATA_DIR", str(tmp_path / "node"))


def test_bootstrap_seg_reads_back_as_the_baseline_masks(ct_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels" / "boot.seg.dcm"
    result = CliRunner().invoke(main, ["bootstrap-labels", str(ct_folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "(unreviewed)" in result.output and out.is_file()
    seg = dcmread(out)
    assert seg.Modality == "SEG" and seg.SeriesDescription == BOOTSTRAP_DESCRIPTION

    description = tmp_path / "data.toml"
    description.write_text(
        f'[[source]]\nkind = "dicom-seg"\nname = "boot"\nct = "{ct_folder}"\nseg = "{out}"\n'
    )
    (volume,) = iter_volumes(load_description(description))
    baseline = analyse_files(sorted(ct_folder.iterdir()), HUParameters())
    assert volume.source == "dicom-seg" and volume.group == "boot/BOOT-1"
    assert np.array_equal(volume.hu, baseline.volume.hu)
    assert volume.lungs is not None and volume.infected is not None
    assert np.array_equal(volume.lungs, baseline.lungs.lungs)
    assert np.array_equal(volume.infected, baseline.lesions.infected)
    assert volume.infected.any()
    # radiological: the right lung (segment 1) lies on the image's left
    right = baseline.lungs.right
    assert np.nonzero(right.any(axis=(0, 1)))[0].mean() < volume.hu.shape[2] / 2

    if shutil.which("dciodvfy") is not None:
        check = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, check=False)
        lines = (check.stdout + check.stderr).splitlines()
        problems = [
            line
            for line in lines
            if line.startswith(("Error", "Warning"))
            and not any(p.search(line) for p in ACCEPTED_WARNINGS)
        ]
        assert not problems


def test_bootstrap_refuses_a_folder_without_a_ct_series(tmp_path: Path) -> None:
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("not DICOM")
    result = CliRunner().invoke(main, ["bootstrap-labels", str(empty)])
    assert result.exit_code == 1
    assert "holds no DICOM series" in result.output


def test_bootstrap_names_the_reason_a_series_is_rejected(tmp_path: Path) -> None:
    abdomen = make_phantom(
        PhantomSpec(
            region="abdomen",
            rows=128,
            columns=128,
            pixel_spacing_mm=3.0,
            slice_thickness_mm=10.0,
            z_extent_mm=100.0,
        )
    )
    folder = tmp_path / "abdomen"
    write_series(
        abdomen,
        folder,
        patient=PatientInfo("BOOT-2", "Abdo^Men"),
        study_datetime=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    result = CliRunner().invoke(main, ["bootstrap-labels", str(folder)])
    assert result.exit_code == 1
    assert "is not a CT series the HU baseline can label" in result.output
    assert not (tmp_path / "abdomen.seg.dcm").exists()
