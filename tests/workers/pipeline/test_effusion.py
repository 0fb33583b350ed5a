"""Pleural effusion: found behind the lungs, kept out of the lungs and the infection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.phantoms.chest import Phantom, PhantomSpec, make_phantom
from tests.factories import WET_PHANTOM
from workers.evaluation.hard import phantom_volume
from workers.evaluation.measures import dice
from workers.pipeline.compose import Analysis, analyse_volume
from workers.pipeline.effusion import segment_effusion
from workers.pipeline.params import HUParameters


@pytest.fixture(scope="module")
def wet() -> tuple[Phantom, Analysis]:
    phantom = make_phantom(WET_PHANTOM)
    return phantom, analyse_volume(phantom_volume(phantom), HUParameters(), {})


def test_an_effusion_is_found_and_kept_out_of_the_lungs_and_the_infection(
    wet: tuple[Phantom, Analysis],
) -> None:
    phantom, analysis = wet
    effusion = analysis.effusion
    assert effusion is not None
    truth_ml = phantom.effusion_volume_ml
    found_ml = analysis.measurement.effusion_volume_ml
    # thin sheets (under ~5 mm) and the recesses below the lung bases are not measured
    assert 0.45 * truth_ml < found_ml < 1.1 * truth_ml, (found_ml, truth_ml)
    assert dice(effusion, phantom.effusion) > 0.6
    assert found_ml == pytest.approx(
        np.count_nonzero(effusion) * phantom_volume(phantom).voxel_volume_ml
    )
    assert not (effusion & analysis.lungs.lungs).any()
    assert not (effusion & analysis.lesions.infected).any()
    # nothing of it is what the phantom calls lung or infection
    wrong = np.count_nonzero(effusion & (phantom.lungs | phantom.infected))
    assert wrong < 0.05 * np.count_nonzero(effusion)
    assert "effusion" in analysis.timings
    assert not effusion.flags.writeable


def test_no_effusion_is_reported_where_there_is_none() -> None:
    phantom = make_phantom(
        PhantomSpec(rows=256, columns=256, pixel_spacing_mm=1.5, lesion_volume_ml=700.0, seed=21)
    )
    analysis = analyse_volume(phantom_volume(phantom), HUParameters(), {})
    assert analysis.effusion is not None and not analysis.effusion.any()
    assert analysis.measurement.effusion_volume_ml == 0.0


def test_rows_running_from_back_to_front_give_the_same_effusion(
    wet: tuple[Phantom, Analysis],
) -> None:
    phantom, analysis = wet
    volume = phantom_volume(phantom)
    aerated = analysis.lungs.lungs  # the HU engine's lungs are the aerated lung
    infected = analysis.lesions.infected
    mirrored = replace(
        volume, hu=np.ascontiguousarray(volume.hu[:, ::-1]), column_cosines=(0.0, -1.0, 0.0)
    )
    upright = segment_effusion(volume, aerated, infected)
    flipped = segment_effusion(mirrored, aerated[:, ::-1], infected[:, ::-1])
    assert upright.any()
    assert np.array_equal(flipped[:, ::-1], upright)


def test_slices_that_are_not_axial_and_prone_patients_are_not_looked_at(
    wet: tuple[Phantom, Analysis],
) -> None:
    phantom, analysis = wet
    volume = phantom_volume(phantom)
    aerated, infected = analysis.lungs.lungs, analysis.lesions.infected
    coronal = replace(volume, row_cosines=(1.0, 0.0, 0.0), column_cosines=(0.0, 0.0, -1.0))
    assert not segment_effusion(coronal, aerated, infected).any()
    for position in ("HFP", "FFP", "HFDR"):
        lying = replace(volume, patient_position=position)
        assert not lying.supine and not segment_effusion(lying, aerated, infected).any()
    assert replace(volume, patient_position="FFS").supine
    assert segment_effusion(replace(volume, patient_position="HFS"), aerated, infected).any()
    assert not segment_effusion(volume, np.zeros_like(aerated), infected).any()
