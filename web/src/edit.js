// The editor view's arithmetic: what an inpainting editor (the inpainter `make web` exports, lama-tiny by default)
// makes of the mask in the original and in the protected image, scored as `paintguard inpaint --original` scores
// it (trainer/commands/inpaint.py):
//   edited  = the inpainter's graph: its fill in the mask, the image outside it   (Inpainter.forward)
//   attack  = mean over the mask's pixels and the 3 channels of (edited - target)^2 (trainer/objective/losses.py)
//   PSNR    = -10 log10(attack)
// with the target colour taken from the original, as protection took it (protect.js's networkInputs gives it).

import { colourName, roundHalfEven } from './protect.js';

export const TAKEN_OVER_DB = 20; // a fill this close to the target reads as the solid colour (compare's threshold)

/** Sums of ``values`` (a ``width`` x ``height`` grid) over the square window of side ``2r + 1`` around each pixel,
 * the part of it inside the image: one sliding sum along the rows, then one along the columns. */
function windowSums(values, width, height, r) {
  const rows = new Int32Array(width * height);
  for (let y = 0; y < height; y++) {
    let sum = 0;
    for (let x = 0; x < Math.min(r, width); x++) sum += values[y * width + x];
    for (let x = 0; x < width; x++) {
      if (x + r < width) sum += values[y * width + x + r];
      if (x - r - 1 >= 0) sum -= values[y * width + x - r - 1];
      rows[y * width + x] = sum;
    }
  }
  const out = new Int32Array(width * height);
  for (let x = 0; x < width; x++) {
    let sum = 0;
    for (let y = 0; y < Math.min(r, height); y++) sum += rows[y * width + x];
    for (let y = 0; y < height; y++) {
      if (y + r < height) sum += rows[(y + r) * width + x];
      if (y - r - 1 >= 0) sum -= rows[(y - r - 1) * width + x];
      out[y * width + x] = sum;
    }
  }
  return out;
}

/** Binary dilation by a ``size`` x ``size`` square (generator/masks.py's dilate). */
function dilate(mask, width, height, size) {
  const sums = windowSums(mask, width, height, size >> 1);
  return Uint8Array.from(sums, (sum) => (sum > 0 ? 1 : 0));
}

/** Binary erosion by a ``size`` x ``size`` square, outside the image counting as masked (masks.py's erode). */
function erode(mask, width, height, size) {
  const r = size >> 1;
  const sums = windowSums(mask, width, height, r);
  const span = (i, n) => Math.min(i + r, n - 1) - Math.max(i - r, 0) + 1; // the window's pixels in the image
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      out[y * width + x] = sums[y * width + x] === span(x, width) * span(y, height) ? 1 : 0;
    }
  }
  return out;
}

/** The mask moved ``pixels`` right and down; what leaves the image is lost (masks.py's shift). */
function shift(mask, width, height, pixels) {
  const out = new Uint8Array(width * height);
  for (let y = pixels; y < height; y++) {
    for (let x = pixels; x < width; x++) out[y * width + x] = mask[(y - pixels) * width + x - pixels];
  }
  return out;
}

/** Masks an editor might draw instead of the protected one, by `paintguard inpaint --editor-mask`'s names and
 * words (trainer/evaluation/editor_masks.py): name -> [how it is drawn, the mask from the protected one]. */
export const EDITOR_MASKS = {
  'mask-erode-9': ['4 px tighter', (m, w, h) => erode(m, w, h, 9)],
  'mask-dilate-9': ['4 px looser', (m, w, h) => dilate(m, w, h, 9)],
  'mask-dilate-33': ['16 px looser', (m, w, h) => dilate(m, w, h, 33)],
  'mask-shift-8': ['8 px off', (m, w, h) => shift(m, w, h, 8)],
};

/** The region the editor inpaints: the protected ``mask`` (0/1 per pixel), or editor's mask ``name`` of it. */
export function editorMask(name, mask, width, height) {
  if (!name) return mask;
  const [, draw] = EDITOR_MASKS[name];
  return draw(mask, width, height);
}

/** How the editor view's line names the region, as `paintguard inpaint` does. */
export const whichMask = (name) => (name ? `the mask drawn ${EDITOR_MASKS[name][0]} (${name})` : 'the mask');

/** The attack loss of an edited image (planar (1,3,H,W) float32): its squared distance to ``target`` over the
 * mask's pixels and all channels. */
export function attackLoss(edited, mask, target, n) {
  let sum = 0;
  let count = 0;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      sum += (edited[c * n + i] - target[c]) ** 2;
      count += 1;
    }
  }
  return count ? sum / count : 0;
}

/** PSNR in dB of a squared error of signals in [0, 1], capped at 100 dB as losses.psnr_from_mse does. */
export const psnr = (mse) => -10 * Math.log10(Math.max(mse, 1e-10));

/** RGBA pixels of an edited image (planar float32), each value rounded to the nearest level (save.to_uint8). */
export function editedPixels(edited, n) {
  const out = new Uint8ClampedArray(4 * n);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) out[4 * i + c] = roundHalfEven(Math.min(1, Math.max(0, edited[c * n + i])) * 255);
  }
  for (let i = 0; i < n; i++) out[4 * i + 3] = 255;
  return out;
}

/** Most 8-bit levels any channel of two RGBA images is apart. */
export function levelsApart(a, b) {
  let most = 0;
  for (let i = 0; i < a.length; i++) if (i % 4 !== 3) most = Math.max(most, Math.abs(a[i] - b[i]));
  return most;
}

/** The editor view's one line, in `paintguard inpaint --original`'s words. */
export function editSummary({ inpainter, target, attackProtected, attackOriginal, levels, editorMaskName = '' }) {
  const change = 100 * (attackProtected / Math.max(attackOriginal, 1e-12) - 1);
  const sign = change >= 0 ? '+' : '';
  const [protectedDb, originalDb] = [attackProtected, attackOriginal].map((mse) => psnr(mse).toFixed(2));
  return `${inpainter}'s fill of ${whichMask(editorMaskName)} scores ${protectedDb} dB PSNR against solid `
    + `${colourName(target)}, `
    + `the target colour (${TAKEN_OVER_DB} dB or more reads as solid); on the original ${originalDb} dB: `
    + `the attack loss ${attackOriginal.toFixed(4)} -> ${attackProtected.toFixed(4)} (${sign}${change.toFixed(1)}%), `
    + `the two images ${levels} 8-bit levels apart at most`;
}

/** The box [x0, y0, x1, y1) of the mask's pixels, widened on each side by a quarter of its larger side (at least
 * 16 px) and kept within the image: the part of the edits worth looking at closely. */
export function maskBox(mask, width, height) {
  let [x0, y0, x1, y1] = [width, height, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
    }
  }
  const margin = Math.max(16, Math.ceil(Math.max(x1 - x0, y1 - y0) / 4));
  return [Math.max(0, x0 - margin), Math.max(0, y0 - margin), Math.min(width, x1 + margin),
    Math.min(height, y1 + margin)];
}

/** The RGBA pixels of ``box`` ([x0, y0, x1, y1)) of an RGBA image ``width`` pixels wide. */
export function cropPixels(rgba, width, [x0, y0, x1, y1]) {
  const out = new Uint8ClampedArray(4 * (x1 - x0) * (y1 - y0));
  for (let y = y0; y < y1; y++) {
    out.set(rgba.subarray(4 * (y * width + x0), 4 * (y * width + x1)), 4 * (y - y0) * (x1 - x0));
  }
  return out;
}
