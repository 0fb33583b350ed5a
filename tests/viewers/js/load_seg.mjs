// Loads a DICOM SEG the way OHIF's cornerstone-dicom-seg extension does: Cornerstone3D's
// adapter (createFromDICOMSegBuffer) places its frames on the referenced CT images, found
// through a metadata provider that knows only the CT headers (read with dcmjs).
//
//   node load_seg.mjs SEG.dcm CT_DIR  ->  JSON on stdout:
//   {"segments": {"1": {"label", "rgb", "voxels", "images": {"<SOP UID>": n, ...}}, ...},
//    "overlapping": true|false, "labelmaps": n}
import fs from 'node:fs';
import path from 'node:path';
import dcmjs from 'dcmjs';
import * as core from '@cornerstonejs/core';
import { adaptersSEG } from '@cornerstonejs/adapters';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

function read(file) {
  const bytes = fs.readFileSync(file);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const message = DicomMessage.readFile(buffer, { untilTag: '7FE00010', includeUntilTagValue: false });
  return { buffer, dataset: DicomMetaDictionary.naturalizeDataset(message.dict) };
}

function modules(ds) {
  const iop = ds.ImageOrientationPatient.map(Number);
  const spacing = ds.PixelSpacing.map(Number);
  const plane = {
    frameOfReferenceUID: ds.FrameOfReferenceUID,
    rows: ds.Rows,
    columns: ds.Columns,
    imageOrientationPatient: iop,
    rowCosines: iop.slice(0, 3),
    columnCosines: iop.slice(3, 6),
    imagePositionPatient: ds.ImagePositionPatient.map(Number),
    sliceThickness: Number(ds.SliceThickness),
    pixelSpacing: spacing,
    rowPixelSpacing: spacing[0],
    columnPixelSpacing: spacing[1],
  };
  return {
    instance: ds,
    imagePlaneModule: plane,
    generalImageModule: { sopInstanceUID: ds.SOPInstanceUID, instanceNumber: ds.InstanceNumber },
    generalSeriesModule: { seriesInstanceUID: ds.SeriesInstanceUID, modality: ds.Modality },
    imagePixelModule: {
      rows: ds.Rows,
      columns: ds.Columns,
      bitsAllocated: ds.BitsAllocated,
      bitsStored: ds.BitsStored,
      highBit: ds.HighBit,
      pixelRepresentation: ds.PixelRepresentation,
      samplesPerPixel: ds.SamplesPerPixel,
      photometricInterpretation: ds.PhotometricInterpretation,
    },
    sopCommonModule: { sopClassUID: ds.SOPClassUID, sopInstanceUID: ds.SOPInstanceUID },
  };
}

const [segPath, ctDir] = process.argv.slice(2);
const byImageId = new Map();
const sopOf = new Map();
for (const name of fs.readdirSync(ctDir).sort()) {
  const { dataset } = read(path.join(ctDir, name));
  if (dataset.Modality !== 'CT') continue;
  const imageId = `dicomfile:${path.join(ctDir, name)}`;
  byImageId.set(imageId, modules(dataset));
  sopOf.set(imageId, dataset.SOPInstanceUID);
}
const provider = { get: (type, imageId) => byImageId.get(imageId)?.[type] };
core.metaData.addProvider((type, imageId) => provider.get(type, imageId), 10000);

// OHIF orders a display set's images along the slice normal; so does this
const normal = (m) => {
  const [r, c] = [m.imagePlaneModule.rowCosines, m.imagePlaneModule.columnCosines];
  return [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
};
const ids = [...byImageId.keys()];
const n = normal(byImageId.get(ids[0]));
const along = (id) => byImageId.get(id).imagePlaneModule.imagePositionPatient.reduce((s, v, i) => s + v * n[i], 0);
ids.sort((a, b) => along(a) - along(b));

const seg = fs.readFileSync(segPath);
const segBuffer = seg.buffer.slice(seg.byteOffset, seg.byteOffset + seg.byteLength);
const result = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(ids, segBuffer, {
  metadataProvider: core.metaData,
  tolerance: 1e-3,
});

const segments = {};
result.segMetadata.data.forEach((data, index) => {
  if (index === 0 || !data) return;
  const rgb = dcmjs.data.Colors.dicomlab2RGB(data.RecommendedDisplayCIELabValue).map((x) => Math.round(x * 255));
  segments[index] = { label: data.SegmentLabel, rgb, voxels: 0, images: {} };
});
for (const labelmap of result.labelMapImages) {
  for (const image of labelmap) {
    const pixels = image.getPixelData();
    const sop = sopOf.get(image.referencedImageId);
    for (let i = 0; i < pixels.length; i++) {
      const value = pixels[i];
      if (value === 0) continue;
      const entry = segments[value];
      entry.voxels += 1;
      entry.images[sop] = (entry.images[sop] ?? 0) + 1;
    }
  }
}
process.stdout.write(JSON.stringify({
  segments,
  overlapping: Boolean(result.overlappingSegments),
  labelmaps: result.labelMapImages.length,
}));
