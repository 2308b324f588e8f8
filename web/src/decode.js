// Decoding opened files to pixels as `paintguard protect` reads them (generator/io.py): the file's own values (no
// colour conversion: the bound holds on them, and the PNG written carries the file's ICC profile, as the CLI's
// does), upright per EXIF, images composited on white; 16-bit PNG masks read at their full depth.

import { FileFormatError, ascii, pngChunks, u16be, u32be, webpChunks } from './formats.js';

const RAW = { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'none' };

// the canvas transform (a, b, c, d, e, f) that turns a w x h bitmap upright, per EXIF orientation, as PIL's
// exif_transpose: 2 mirrored, 3 turned 180, 4 flipped, 5 transposed, 6 turned 90 clockwise, 7 transversed,
// 8 turned 90 anticlockwise
const UPRIGHT = {
  2: (w) => [-1, 0, 0, 1, w, 0], 3: (w, h) => [-1, 0, 0, -1, w, h], 4: (w, h) => [1, 0, 0, -1, 0, h],
  5: () => [0, 1, 1, 0, 0, 0], 6: (w, h) => [0, 1, -1, 0, h, 0], 7: (w, h) => [0, -1, -1, 0, h, w],
  8: (w) => [0, -1, 1, 0, 0, w],
};

/** The orientation tag of a TIFF structure (EXIF's) and where its value lies, or null when it has none. */
export function tiffOrientation(t) {
  const le = ascii(t, 0, 2) === 'II';
  if (t.length < 8 || (!le && ascii(t, 0, 2) !== 'MM')) return null;
  const u16 = (i) => (le ? t[i] | (t[i + 1] << 8) : u16be(t, i));
  const u32 = (i) => (le ? (t[i] | (t[i + 1] << 8) | (t[i + 2] << 16)) + t[i + 3] * 2 ** 24 : u32be(t, i));
  const ifd = u32(4);
  if (ifd + 2 > t.length) return null;
  for (let k = 0, n = u16(ifd); k < n && ifd + 14 + 12 * k <= t.length; k++) {
    const entry = ifd + 2 + 12 * k;
    if (u16(entry) === 0x0112 && u16(entry + 2) === 3) return { orientation: u16(entry + 8), at: entry + 8, le };
  }
  return null;
}

/** A WebP's EXIF orientation {orientation, at, le} (``at`` an offset into the file's bytes), or null. */
export function webpOrientation(bytes) {
  for (const { type, data } of webpChunks(bytes)) {
    if (type !== 'EXIF') continue;
    const skip = ascii(data, 0, 6) === 'Exif\0\0' ? 6 : 0; // some writers keep JPEG's APP1 prefix
    const found = tiffOrientation(data.subarray(skip));
    return found && { ...found, at: found.at + data.byteOffset - bytes.byteOffset + skip };
  }
  return null;
}

async function bitmapOf(blob, options) {
  try {
    return await createImageBitmap(blob, options);
  } catch (err) {
    throw new FileFormatError('the browser cannot decode it (corrupt file?)');
  }
}

/** Decode ``bytes`` (a file of format ``format``) to an upright bitmap, read without colour conversion. */
async function uprightBitmap(bytes, format) {
  const tag = format === 'WebP' ? webpOrientation(bytes) : null;
  if (!tag || !UPRIGHT[tag.orientation]) return { bitmap: await bitmapOf(new Blob([bytes]), RAW), transform: null };
  // Chromium turns JPEG and PNG upright itself but not WebP: decode a copy tagged upright (1) and turn it here,
  // so a browser that learns to would not turn it twice
  const copy = bytes.slice();
  copy[tag.at] = tag.le ? 1 : 0;
  copy[tag.at + 1] = tag.le ? 0 : 1;
  return { bitmap: await bitmapOf(new Blob([copy]), RAW), transform: UPRIGHT[tag.orientation] };
}

/** Decode a file's ``bytes`` to RGBA pixels {width, height, rgba}: upright, the file's values, images (not masks)
 * composited on white as the CLI does. */
export async function decodePixels(bytes, format, { forMask = false } = {}) {
  const { bitmap, transform } = await uprightBitmap(bytes, format);
  const turned = transform && transform(1, 1)[0] === 0; // a quarter turn swaps the sides
  const [width, height] = turned ? [bitmap.height, bitmap.width] : [bitmap.width, bitmap.height];
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  if (!forMask) {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, height);
  }
  if (transform) ctx.setTransform(...transform(bitmap.width, bitmap.height));
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { width, height, rgba: ctx.getImageData(0, 0, width, height).data };
}

/** zlib-compressed ``data`` (bytes or a Blob) inflated. */
export async function inflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a, b, c) {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** PNG's scanlines unfiltered: ``height`` rows of ``stride`` bytes, ``bpp`` bytes a pixel. */
function unfilter(raw, height, stride, bpp) {
  if (raw.length < height * (stride + 1)) throw new FileFormatError('a PNG whose pixel data is cut short');
  const rows = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    if (filter > 4) throw new FileFormatError('a PNG whose pixel data is corrupt');
    const src = y * (stride + 1) + 1;
    const dst = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? rows[dst + i - bpp] : 0;
      const b = y > 0 ? rows[dst - stride + i] : 0;
      const c = y > 0 && i >= bpp ? rows[dst - stride + i - bpp] : 0;
      const predicted = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      rows[dst + i] = (raw[src + i] + predicted) & 255;
    }
  }
  return rows;
}

/** The region of a 16-bit PNG mask as generator/io.py reads it through Pillow: greyscale at its full depth (a label
 * mask of 1s is protected), colour and alpha by their high bytes (Pillow keeps 8 bits of them). The browser would
 * round every sample to 8 bits, losing values under 129. */
export async function sixteenBitMask(bytes) {
  const chunks = [...pngChunks(bytes)];
  const header = chunks[0].data;
  const [width, height, colour, interlaced] = [u32be(header, 0), u32be(header, 4), header[9], header[12]];
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colour];
  if (interlaced) throw new FileFormatError('an interlaced 16-bit PNG mask; save it without interlacing, or as 8-bit');
  const exif = chunks.find((c) => c.type === 'eXIf');
  if (exif && (tiffOrientation(exif.data)?.orientation ?? 1) !== 1) {
    throw new FileFormatError('a 16-bit PNG mask stored turned (an EXIF orientation); save it upright, or as 8-bit');
  }
  const idat = chunks.filter((c) => c.type === 'IDAT').map((c) => c.data);
  let raw;
  try {
    raw = await inflate(new Blob(idat));
  } catch (err) {
    throw new FileFormatError('a PNG whose pixel data is corrupt');
  }
  const bpp = 2 * channels;
  const rows = unfilter(raw, height, width * bpp, bpp);
  const region = new Uint8Array(width * height);
  const colours = colour === 0 || colour === 4 ? 1 : 3;
  for (let p = 0; p < region.length; p++) {
    const o = p * bpp;
    if (colour === 0) {
      region[p] = rows[o] | rows[o + 1] ? 1 : 0;
      continue;
    }
    let any = 0;
    for (let k = 0; k < colours; k++) any |= rows[o + 2 * k];
    const alpha = channels === 2 || channels === 4 ? rows[o + 2 * colours] : 255;
    region[p] = any && alpha ? 1 : 0;
  }
  return { width, height, region };
}
