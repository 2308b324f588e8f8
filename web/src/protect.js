// The arithmetic around the network, mirroring the Python side operation for operation so that the page's
// PNG equals `paintguard protect`'s up to the network's own float differences:
//   image  = uint8 / 255 in float32                      (generator/io.py)
//   target = generator/target.py
//   protected = clamp(image + noise, 0, 1) in float32     (Protector.protect_batch)
//   8-bit  = round half to even, clamped to the levels within eps of the original (generator/save.py)

// Pure green, red, blue: checked in this order, and on a tie the earlier one wins (generator/target.py).
export const TARGET_COLOURS = [[0, 255, 0], [255, 0, 0], [0, 0, 255]];

/** float32 value of each 8-bit level, as torch's uint8 -> float32 / 255 gives it. */
export const LEVELS = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * The target colour of RGBA pixels, as generator/target.py computes it: the per-channel mean of the
 * 8-bit values truncated to an integer, and the pure colour at the largest squared distance from it.
 * Integer arithmetic throughout (the distances in 255ths differ by whole numbers), so ties are exact.
 * Returns [r, g, b] in {0, 1}.
 */
export function targetColour(rgba, pixels) {
  const sum = [0, 0, 0];
  for (let i = 0; i < pixels; i++) {
    sum[0] += rgba[4 * i]; sum[1] += rgba[4 * i + 1]; sum[2] += rgba[4 * i + 2];
  }
  const mean = sum.map((s) => Math.floor(s / pixels));
  let best = 0;
  let bestDistance = -1;
  TARGET_COLOURS.forEach((colour, k) => {
    const d = colour.reduce((acc, c, ch) => acc + (mean[ch] - c) ** 2, 0);
    if (d > bestDistance) { best = k; bestDistance = d; } // strictly greater: the first maximum wins
  });
  return TARGET_COLOURS[best].map((c) => c / 255);
}

/** The name of a target colour [r, g, b] in {0, 1}: its one full channel's. */
export const colourName = (target) => ['red', 'green', 'blue'][Array.prototype.indexOf.call(target, 1)];

/** The network's inputs: image (1,3,H,W) planar float32, mask (1,1,H,W) in {0,1}, target (1,3). */
export function networkInputs(rgba, mask, width, height) {
  const n = width * height;
  const image = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    image[i] = LEVELS[rgba[4 * i]];
    image[n + i] = LEVELS[rgba[4 * i + 1]];
    image[2 * n + i] = LEVELS[rgba[4 * i + 2]];
  }
  const maskF = new Float32Array(n);
  for (let i = 0; i < n; i++) maskF[i] = mask[i] ? 1 : 0;
  return { image, mask: maskF, target: Float32Array.from(targetColour(rgba, n)) };
}

/** torch.round: to the nearest integer, halves to the even one. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/**
 * Protected RGBA pixels from the original RGBA and the network's planar noise: float32 sum, clamp to [0, 1],
 * then 8-bit levels within eps of the original (generator/save.py quantize_within_bound), so that
 * |saved - original| <= eps holds after the PNG is decoded. Alpha is 255 (the page composites on white).
 */
export function protectedPixels(rgba, noise, width, height, eps) {
  const n = width * height;
  const out = new Uint8ClampedArray(4 * n);
  const bound = eps * 255;
  const slack = 1e-6; // float round-off of eps * 255, as in save.py
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      const x = LEVELS[rgba[4 * i + c]];
      let p = Math.fround(x + noise[c * n + i]);
      p = p < 0 ? 0 : p > 1 ? 1 : p;
      const x255 = x * 255;
      const lo = Math.min(255, Math.max(0, Math.ceil(x255 - bound - slack)));
      const hi = Math.min(255, Math.max(0, Math.floor(x255 + bound + slack)));
      out[4 * i + c] = Math.min(Math.max(roundHalfEven(p * 255), lo), hi);
    }
  }
  for (let i = 0; i < n; i++) out[4 * i + 3] = 255;
  return out;
}

/** The saved noise, magnified for display: grey 128 is zero, `gain` grey levels per 8-bit level. */
export function noiseView(original, protectedRgba, gain) {
  const out = new Uint8ClampedArray(protectedRgba.length);
  for (let i = 0; i < out.length; i += 4) {
    for (let c = 0; c < 3; c++) out[i + c] = 128 + gain * (protectedRgba[i + c] - original[i + c]);
    out[i + 3] = 255;
  }
  return out;
}
