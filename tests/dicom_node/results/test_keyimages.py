"""Key images: references to the CT."""

from __future__ import annotations

import numpy as np
from pydicom import dcmread

from dicom_node.results.model import SeriesAnalysis
from dicom_node.results.write import WrittenObject
from tests.dicom_node.results.conftest import of_kind


def test_key_images_reference_the_ct(
    written: list[WrittenObject], analysed: SeriesAnalysis
) -> None:
    sources = {
        str(ds.SOPInstanceUID): ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in analysed.source_paths)
    }
    shown = []
    for obj in of_kind(written, "key-image") + of_kind(written, "summary"):
        ds = dcmread(obj.path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.PhotometricInterpretation == "RGB"
        assert ds.pixel_array.shape[-1] == 3
        assert ds.BurnedInAnnotation == "YES"
        assert ds.ImageType[0] == "DERIVED"
        if obj.kind == "key-image":
            source = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
            # named as a viewer names the CT image: its Instance Number and z position
            label = f"CT image {source.InstanceNumber}, z {source.ImagePositionPatient[2]:.1f} mm"
            assert ds.ImageComments.startswith(label + ";"), ds.ImageComments
            shown.append(f"{source.InstanceNumber} (z {source.ImagePositionPatient[2]:.1f} mm)")
        else:
            assert "Key images (series 9003): CT images " + ", ".join(shown) in ds.ImageComments
    key_series = {o.series_instance_uid for o in of_kind(written, "key-image")}
    assert len(key_series) == 1


def test_an_effusion_is_outlined_in_its_colour_and_named_in_the_legend() -> None:
    from dicom_node.dicom.codes import EFFUSION_SEGMENT
    from dicom_node.results.keyimages import render_slice

    hu = np.full((128, 128), -800, dtype=np.int16)
    right = np.zeros((128, 128), dtype=bool)
    right[30:90, 20:60] = True
    left = np.zeros_like(right)
    left[30:90, 70:110] = True
    effusion = np.zeros_like(right)
    effusion[92:110, 20:60] = True
    colour = np.array(EFFUSION_SEGMENT.color_rgb, dtype=np.uint8)

    def coloured(rgb: np.ndarray) -> int:
        return int(np.all(rgb == colour, axis=-1).sum())

    without = render_slice(hu, right, left, np.zeros_like(right), "caption")
    with_effusion = render_slice(hu, right, left, np.zeros_like(right), "caption", effusion)
    legend_only = render_slice(
        hu, right, left, np.zeros_like(right), "caption", np.zeros_like(right)
    )
    assert coloured(without) == 0
    assert coloured(legend_only) > 0  # the legend names the effusion
    # and its outline, drawn at 4 x 4 screen pixels per image pixel (512 // 128)
    outline = 2 * (18 + 40) - 4
    assert coloured(with_effusion) - coloured(legend_only) == 16 * outline
