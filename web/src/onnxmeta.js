// The metadata properties of an ONNX model (ModelProto field 14), read straight from its protobuf bytes:
// the page takes eps and the source checkpoint's fingerprint from the model itself, never from a copy.

const METADATA_PROPS = 14;

function varint(b, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const byte = b[pos++];
    value += (byte & 0x7f) * scale; // multiplication, not shifts: values can pass 2**31
    scale *= 128;
    if (!(byte & 0x80)) return [value, pos];
  }
}

function* fields(b) {
  let pos = 0;
  while (pos < b.length) {
    let key;
    [key, pos] = varint(b, pos);
    const number = Math.floor(key / 8);
    const wire = key & 7;
    let value;
    if (wire === 0) [value, pos] = varint(b, pos);
    else if (wire === 1) { value = null; pos += 8; }
    else if (wire === 5) { value = null; pos += 4; }
    else if (wire === 2) {
      let size;
      [size, pos] = varint(b, pos);
      value = b.subarray(pos, pos + size);
      pos += size;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
    if (pos > b.length) throw new Error('truncated message');
    yield [number, wire, value];
  }
}

/** The metadata properties of an ONNX model's bytes (Uint8Array) as a plain object of strings. */
export function onnxMetadata(bytes) {
  const text = new TextDecoder();
  const meta = {};
  for (const [number, wire, value] of fields(bytes)) {
    if (number !== METADATA_PROPS || wire !== 2) continue;
    const entry = {};
    for (const [n, w, v] of fields(value)) if (w === 2) entry[n] = text.decode(v);
    meta[entry[1] ?? ''] = entry[2] ?? '';
  }
  return meta;
}

/** eps, architecture and source of a PaintGuard generator export; throws if the model is not one. */
export function generatorInfo(bytes) {
  const meta = onnxMetadata(bytes);
  if (meta.format !== 'paintguard' || meta.kind !== 'generator-onnx') {
    throw new Error('this ONNX model is not a PaintGuard generator export (no paintguard metadata)');
  }
  const eps = Number(meta.eps);
  if (!(eps > 0 && eps < 1)) throw new Error(`the model's eps '${meta.eps}' is not a valid bound`);
  return { eps, config: JSON.parse(meta.config), source: meta.source, sha256: meta.source_sha256 };
}

/** Source and architecture of a PaintGuard inpainter export (the editor view's); throws if the model is not one. */
export function inpainterInfo(bytes) {
  const meta = onnxMetadata(bytes);
  if (meta.format !== 'paintguard' || meta.kind !== 'inpainter-onnx') {
    throw new Error('this ONNX model is not a PaintGuard inpainter export (no paintguard metadata)');
  }
  return { config: JSON.parse(meta.config), source: meta.source, sha256: meta.source_sha256 };
}
