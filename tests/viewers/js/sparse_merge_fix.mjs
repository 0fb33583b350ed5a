// Node module hook: replaces compactMergeSegData.js of @cornerstonejs/adapters with a merge
// that visits every image. The released merge walks its sparse per-image arrays with
// forEach, which skips the images where only the incoming segment has pixels: when two
// segments that do not overlap share a labelmap layer, the incoming one can lose whole
// slices. Used with
//   node --experimental-loader ./sparse_merge_fix.mjs load_seg.mjs ...
const FIXED = `
const imagesOf = (a, b) => Math.max(a.length, b.length);
const checkHasOverlapping = ({ currentTestedArray, newArray }) => {
  for (let i = 0; i < imagesOf(currentTestedArray, newArray); i++) {
    const original = currentTestedArray[i];
    const added = newArray[i];
    if (!original || !added) continue;
    for (let p = 0; p < original.length; p++) {
      if (original[p] && added[p]) return true;
    }
  }
  return false;
};
const compactMergeSegmentDataWithoutInformationLoss = ({ arrayOfSegmentData, newSegmentData }) => {
  if (arrayOfSegmentData.length === 0) {
    arrayOfSegmentData.push(newSegmentData);
    return;
  }
  for (const currentTestedArray of arrayOfSegmentData) {
    if (checkHasOverlapping({ currentTestedArray, newArray: newSegmentData })) continue;
    for (let i = 0; i < imagesOf(currentTestedArray, newSegmentData); i++) {
      const original = currentTestedArray[i];
      const added = newSegmentData[i];
      if (!added) continue;
      currentTestedArray[i] = original ? original.map((pixel, p) => pixel || added[p]) : added;
    }
    return;
  }
  arrayOfSegmentData.push(newSegmentData);
};
export { compactMergeSegmentDataWithoutInformationLoss };
`;

export async function load(url, context, nextLoad) {
  if (url.endsWith('/adapters/Cornerstone3D/Segmentation/compactMergeSegData.js')) {
    return { format: 'module', source: FIXED, shortCircuit: true };
  }
  return nextLoad(url, context);
}
