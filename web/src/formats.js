// Image size from the file header, before anything is decoded: a decompression bomb (a few kB that
// decode to gigabytes) is refused here, so it can never freeze or crash the tab.

export const FORMATS = ['PNG', 'JPEG', 'WebP'];

export class FileFormatError extends Error {}

export function u16be(b, i) { return (b[i] << 8) | b[i + 1]; }
export function u32be(b, i) { return ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; }
function u16le(b, i) { return b[i] | (b[i + 1] << 8); }
function u24le(b, i) { return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16); }
function u32le(b, i) { return (u24le(b, i) + (b[i + 3] << 24 >>> 0)) >>> 0; }
export function ascii(b, i, n) { return String.fromCharCode(...b.subarray(i, i + n)); }

/** The chunks of a PNG's bytes, in order, as {type, start, data} (start: the chunk's first byte), up to IEND or
 * the first one cut short. */
export function* pngChunks(b) {
  for (let i = 8; i + 12 <= b.length;) {
    const length = u32be(b, i);
    if (i + 12 + length > b.length) return;
    const type = ascii(b, i + 4, 4);
    yield { type, start: i, data: b.subarray(i + 8, i + 8 + length) };
    if (type === 'IEND') return;
    i += 12 + length;
  }
}

function pngSize(b) {
  if (b.length < 24 || ascii(b, 12, 4) !== 'IHDR') throw new FileFormatError('a PNG without its IHDR header');
  // complete when its chunks run whole to IEND: bytes after it, which some writers append, are read by Pillow too
  let complete = false;
  for (const chunk of pngChunks(b)) complete = chunk.type === 'IEND';
  return { width: u32be(b, 16), height: u32be(b, 20), bitDepth: b[24], truncated: !complete };
}

function hasEndOfImage(b, from) {
  // 0xFF 0xD9 cannot occur inside entropy-coded data (0xFF is stuffed there), so after the first scan it is the end
  for (let i = b.length - 2; i >= from; i--) if (b[i] === 0xff && b[i + 1] === 0xd9) return true;
  return false;
}

/** The marker segments of a JPEG's bytes, in order, as {marker, at, length} (``at``: the marker's 0xFF), up to and
 * including the first scan (0xDA) or the end (0xD9), whose length is not read; throws on corrupt segments. */
export function* jpegSegments(b) {
  for (let i = 2; i + 4 <= b.length;) {
    if (b[i] !== 0xff) throw new FileFormatError('a JPEG whose segments are corrupt');
    const marker = b[i + 1];
    if (marker === 0xff) { i += 1; continue; } // fill byte
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    if (marker === 0xd9 || marker === 0xda) { yield { marker, at: i, length: 0 }; return; }
    const length = u16be(b, i + 2);
    if (length < 2) throw new FileFormatError('a JPEG whose segments are corrupt');
    yield { marker, at: i, length };
    i += 2 + length;
  }
}

function jpegSize(b) {
  // walk the marker segments (skipping EXIF and its thumbnail) to the frame header, then to the first scan
  let size = null;
  for (const { marker, at } of jpegSegments(b)) {
    if (marker === 0xd9) break;
    if (marker === 0xda) {
      if (!size) break;
      return { ...size, truncated: !hasEndOfImage(b, at) };
    }
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC)
    if (!size && marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (at + 9 > b.length) break;
      size = { width: u16be(b, at + 7), height: u16be(b, at + 5) };
    }
  }
  if (size) return { ...size, truncated: true };
  throw new FileFormatError('a JPEG without a frame header (truncated or corrupt)');
}

function webpSize(b) {
  if (b.length < 30) throw new FileFormatError('a truncated WebP');
  return { ...webpDimensions(b), truncated: u32le(b, 4) + 8 > b.length }; // RIFF's size field covers the file
}

/** The chunks of a WebP's bytes after its RIFF header, as {type, data}; RIFF pads each to an even length. */
export function* webpChunks(b) {
  for (let i = 12; i + 8 <= b.length;) {
    const length = u32le(b, i + 4);
    if (i + 8 + length > b.length) return;
    yield { type: ascii(b, i, 4), data: b.subarray(i + 8, i + 8 + length) };
    i += 8 + length + (length % 2);
  }
}

function webpDimensions(b) {
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8X') return { width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) throw new FileFormatError('a lossless WebP with a bad signature');
    const bits = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) throw new FileFormatError('a lossy WebP with a bad start code');
    return { width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  }
  throw new FileFormatError(`a WebP with an unknown first chunk '${chunk}'`);
}

/** {format, width, height, truncated} of a PNG, JPEG or WebP file's bytes (Uint8Array); throws FileFormatError otherwise. */
export function imageSize(bytes) {
  const b = bytes;
  let found;
  if (b.length >= 8 && u32be(b, 0) === 0x89504e47 && u32be(b, 4) === 0x0d0a1a0a) found = { format: 'PNG', ...pngSize(b) };
  else if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) found = { format: 'JPEG', ...jpegSize(b) };
  else if (b.length >= 16 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') found = { format: 'WebP', ...webpSize(b) };
  else if (b.length === 0) throw new FileFormatError('an empty file');
  else throw new FileFormatError('not a PNG, JPEG or WebP image');
  if (!(found.width > 0 && found.height > 0)) throw new FileFormatError(`a ${found.format} whose header gives no size`);
  return found;
}
