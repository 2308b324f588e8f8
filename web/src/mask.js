// The region to protect: one byte per image pixel, edited by brush strokes, an eraser, a loaded mask file
// and clear, with undo. Edits are kept as a list of operations and replayed on undo: a stroke costs a few
// points of memory where a snapshot of a 4K mask would cost 8 MB.

const OVERLAY = [255, 40, 90, 120]; // RGBA of a protected pixel on the overlay canvas

export class MaskEditor {
  /** @param {HTMLCanvasElement} canvas the overlay, sized to the image in pixels */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.width = 0;
    this.height = 0;
    this.mask = new Uint8Array(0);
    this.ops = [];
    this.stroke = null;
  }

  /** A new, empty mask for an image of width x height. */
  reset(width, height) {
    this.width = width;
    this.height = height;
    this.canvas.width = width;
    this.canvas.height = height;
    this.mask = new Uint8Array(width * height);
    this.overlay = this.ctx.createImageData(width, height);
    this.ops = [];
    this.stroke = null;
    this.render();
  }

  /** Back to an earlier image's mask: its size and its list of edits, replayed (see ``history``). */
  restore({ width, height, ops }) {
    this.reset(width, height);
    this.ops = ops;
    for (const op of ops) this.apply(op);
    this.render();
  }

  /** What ``restore`` takes to bring this mask back once another image has replaced it. */
  history() { return { width: this.width, height: this.height, ops: this.ops }; }

  /** Protected pixels so far. */
  count() {
    let n = 0;
    for (let i = 0; i < this.mask.length; i++) n += this.mask[i];
    return n;
  }

  /** Replace the whole mask by a loaded one (Uint8Array of 0/1, one per pixel); undo brings the old one back. */
  load(region) {
    this.ops.push({ kind: 'load', region });
    this.apply(this.ops[this.ops.length - 1]);
    this.render();
  }

  clear() {
    if (!this.ops.length) return;
    this.ops.push({ kind: 'clear' });
    this.mask.fill(0);
    this.render();
  }

  undo() {
    if (this.stroke) return;
    this.ops.pop();
    this.mask.fill(0);
    for (const op of this.ops) this.apply(op);
    this.render();
  }

  canUndo() { return this.ops.length > 0; }

  /** Start a brush (erase=false) or eraser stroke of `size` pixels' diameter at image coordinates (x, y). */
  begin(x, y, size, erase) {
    this.stroke = { kind: 'stroke', erase, radius: Math.max(0.5, size / 2), points: [[x, y]] };
    this.ops.push(this.stroke);
    this.render(this.segment(this.stroke, [x, y], [x, y]));
  }

  extend(x, y) {
    if (!this.stroke) return;
    const points = this.stroke.points;
    const last = points[points.length - 1];
    points.push([x, y]);
    this.render(this.segment(this.stroke, last, [x, y]));
  }

  end() { this.stroke = null; }

  apply(op) {
    if (op.kind === 'clear') this.mask.fill(0);
    else if (op.kind === 'load') this.mask.set(op.region);
    else {
      let last = op.points[0];
      for (const p of op.points) { this.segment(op, last, p); last = p; }
    }
  }

  /** Stamp discs along a segment; returns the rectangle it touched. */
  segment(op, [x0, y0], [x1, y1]) {
    const r = op.radius;
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(0.5, r / 2)));
    for (let s = 0; s <= steps; s++) this.disc(x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps, r, op.erase);
    const left = Math.max(0, Math.floor(Math.min(x0, x1) - r - 1));
    const top = Math.max(0, Math.floor(Math.min(y0, y1) - r - 1));
    const right = Math.min(this.width, Math.ceil(Math.max(x0, x1) + r + 1));
    const bottom = Math.min(this.height, Math.ceil(Math.max(y0, y1) + r + 1));
    return [left, top, right - left, bottom - top];
  }

  disc(cx, cy, r, erase) {
    const value = erase ? 0 : 1;
    const top = Math.max(0, Math.ceil(cy - r - 0.5));
    const bottom = Math.min(this.height - 1, Math.floor(cy + r - 0.5));
    for (let y = top; y <= bottom; y++) {
      const dy = y + 0.5 - cy; // pixel centres
      const half = Math.sqrt(Math.max(0, r * r - dy * dy));
      const left = Math.max(0, Math.ceil(cx - half - 0.5));
      const right = Math.min(this.width - 1, Math.floor(cx + half - 0.5));
      if (right >= left) this.mask.fill(value, y * this.width + left, y * this.width + right + 1);
    }
  }

  /** Redraw the overlay, all of it or only the rectangle [x, y, w, h]. */
  render(rect = [0, 0, this.width, this.height]) {
    const [x, y, w, h] = rect;
    if (w <= 0 || h <= 0) return;
    const data = this.overlay.data;
    for (let row = y; row < y + h; row++) {
      for (let col = x; col < x + w; col++) {
        const i = row * this.width + col;
        const on = this.mask[i];
        for (let c = 0; c < 4; c++) data[4 * i + c] = on ? OVERLAY[c] : 0;
      }
    }
    this.ctx.putImageData(this.overlay, 0, 0, x, y, w, h);
  }
}

/**
 * The region of a decoded mask image's RGBA pixels, as generator/io.py reads masks: a pixel is protected
 * when any colour channel is non-zero and it is not transparent.
 */
export function maskRegion(rgba, pixels) {
  const region = new Uint8Array(pixels);
  for (let i = 0; i < pixels; i++) {
    region[i] = (rgba[4 * i + 3] > 0 && (rgba[4 * i] | rgba[4 * i + 1] | rgba[4 * i + 2]) !== 0) ? 1 : 0;
  }
  return region;
}

// Why a loaded mask marks nothing: the words for the error, as the CLI's warning says them.
export function emptyMaskReason(rgba, pixels) {
  let drawn = false, clear = false;
  for (let i = 0; i < pixels; i++) {
    if (rgba[4 * i + 3] > 0) drawn = true; else clear = true;
  }
  return drawn && clear
    ? 'it marks nothing: it is drawn in black on a transparent background, and the region is its non-black pixels (paint it in white)'
    : 'it marks nothing: every pixel is black or transparent';
}
