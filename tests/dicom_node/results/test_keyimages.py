"""Key images: references to the CT."""

from __future__ import annotations

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
