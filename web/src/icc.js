// The colour profile travels from the opened file to the downloaded PNG, as `paintguard protect` keeps it
// (generator/protect_items.py): an ICC profile that describes RGB is written into the PNG's iCCP chunk, and the
// pixels keep the file's own values, so colours look as in the source and the bound holds on the file's values.

import { ascii, jpegSegments, pngChunks, webpChunks } from './formats.js';
import { inflate } from './decode.js';

/** The bytes of ``parts`` (Uint8Arrays) one after another. */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

function jpegProfile(bytes) {
  // APP2 segments "ICC_PROFILE\0", then the part's number and the count, then the part
  const parts = [];
  for (const { marker, at, length } of jpegSegments(bytes)) {
    if (marker === 0xe2 && length > 16 && ascii(bytes, at + 4, 12) === 'ICC_PROFILE\0') {
      parts.push([bytes[at + 16], bytes.subarray(at + 18, at + 2 + length)]);
    }
  }
  return parts.length ? concat(parts.sort((a, b) => a[0] - b[0]).map(([, part]) => part)) : null;
}

async function embeddedProfile(bytes, format) {
  if (format === 'JPEG') return jpegProfile(bytes);
  if (format === 'WebP') return [...webpChunks(bytes)].find((c) => c.type === 'ICCP')?.data ?? null;
  const chunk = [...pngChunks(bytes)].find((c) => c.type === 'iCCP');
  if (!chunk) return null;
  const name = chunk.data.indexOf(0); // a name, its terminating 0, the compression method (0), then zlib data
  try {
    return await inflate(chunk.data.subarray(name + 2));
  } catch (err) {
    return null; // a damaged profile: the CLI's Pillow drops it too
  }
}

/** The ICC profile of a PNG, JPEG or WebP file's ``bytes`` when it describes RGB (the CLI drops grey and CMYK
 * profiles, as its output is RGB), else null. */
export async function rgbProfile(bytes, format) {
  const profile = await embeddedProfile(bytes, format);
  return profile && profile.length >= 20 && ascii(profile, 16, 4) === 'RGB ' ? profile : null;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const body = concat([Uint8Array.from(type, (ch) => ch.charCodeAt(0)), data]);
  const out = new Uint8Array(12 + data.length);
  new DataView(out.buffer).setUint32(0, data.length);
  out.set(body, 4);
  new DataView(out.buffer).setUint32(8 + data.length, crc32(body));
  return out;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate')); // zlib, as iCCP wants
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// chunks that say how to read the colours: the profile replaces any the encoder wrote (PNG allows one of them)
const COLOUR_CHUNKS = new Set(['iCCP', 'sRGB', 'gAMA', 'cHRM']);

/** The PNG ``png`` (bytes) with ``profile`` in an iCCP chunk after its header, named as Pillow names it. */
export async function withProfile(png, profile) {
  const name = Uint8Array.from('ICC Profile\0\0', (ch) => ch.charCodeAt(0)); // the name, its 0, method 0 (zlib)
  const iccp = pngChunk('iCCP', concat([name, await deflate(profile)]));
  const chunks = [...pngChunks(png)];
  const whole = (c) => png.subarray(c.start, c.start + 12 + c.data.length);
  return concat([png.subarray(0, 8), whole(chunks[0]), iccp,
    ...chunks.slice(1).filter((c) => !COLOUR_CHUNKS.has(c.type)).map(whole)]);
}
