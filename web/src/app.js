// The page: open an image, paint or load the mask, run the exported generator with onnxruntime-web,
// show and download the protected PNG. Nothing leaves the browser: the only requests are for this
// page's own files, served by `paintguard web`.

import * as ort from '../ort/ort.min.mjs';
import { decodePixels, sixteenBitMask } from './decode.js';
import { FileFormatError, imageSize } from './formats.js';
import { rgbProfile, withProfile } from './icc.js';
import { MaskEditor, emptyMaskReason, maskRegion } from './mask.js';
import {
  EDITOR_MASKS, attackLoss, cropPixels, editSummary, editedPixels, editorMask, levelsApart, maskBox, whichMask,
} from './edit.js';
import { generatorInfo, inpainterInfo } from './onnxmeta.js';
import { colourName, networkInputs, noiseView, protectedPixels } from './protect.js';

// Larger images are refused from their header, before decoding: onnxruntime's peak grows with the pixels
// (1 GB at 3840x2160 natively, so about 2 GB here, plus the page's own copies) and a WebAssembly page
// can address 4 GB at most; 4096x4096 ran in headless Chromium. `paintguard protect` goes to 40 MP.
export const MAX_PIXELS = 16_777_216; // 4096 x 4096
export const MAX_FILE_BYTES = 200 * 1024 * 1024;
const MIN_SIDE = 16; // as `paintguard protect`: the U-Net's 16x downsampling and the 17x17 ring
const FULL_MASK = 'the mask covers the whole image: an inpainter sees none of its pixels, so no noise can steer its fill';
const NOISE_GAIN = 20;

const $ = (id) => document.getElementById(id);
// the generators of models.json (`make web`), each with the largest image it takes: the default one first
// (its graph needs far more memory per pixel than the fast one's), a faster one above it. `session` and `info`
// (eps, source, sha256) are set once a model is loaded; the first one loads with the page, the others when needed.
// `previous` is the image a newly opened one replaced, with its mask's edits: Undo brings it back (a stray drop
// would otherwise lose a painted mask), once the new image's own edits are undone.
// `inpainter` is models.json's one for the editor view (step 4), loaded on its first use; null when the page has none.
const state = { models: [], inpainter: null, providers: [], provider: null, image: null, previous: null, result: null,
  busy: false, modelError: null };
const loaded = () => state.models.length > 0 && state.models[0].session !== null;
const editor = new MaskEditor($('mask-canvas'));

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
  $('status').textContent = 'Something went wrong (see below).';
  // it sits under the Protect button: a refused file, opened at the top of the page, scrolls it into view
  $('error').scrollIntoView({ block: 'nearest' });
}

/** Hide the last error; a model that did not load stays said, as nothing can be protected without it. */
function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
  if (state.modelError) showError(state.modelError);
}

function setStatus(text) { $('status').textContent = text; }

// `data-state` on <body>: "working" while a file is opened or an image protected, "idle" after (tests wait on it)
function working(on) { document.body.dataset.state = on ? 'working' : 'idle'; }

function refreshButtons() {
  const ready = loaded() && state.image && !state.busy;
  const painted = state.image ? editor.count() : 0;
  $('protect').disabled = !ready;
  $('undo').disabled = !state.image || !(editor.canUndo() || state.previous) || state.busy;
  $('clear').disabled = !painted || state.busy;
  $('download').disabled = !state.result || state.busy;
  $('inpaint').disabled = !state.result || state.busy || !editorTakes(state.image);
  $('editor-mask').disabled = state.busy;
  // no other file while one is opened or protected: its result would be shown and saved under the new name
  $('image-input').disabled = state.busy;
  $('mask-input').disabled = state.busy || !state.image;
  if (state.image) $('mask-info').textContent = `${painted.toLocaleString('en')} px protected`;
}

const RESULT_CANVASES = ['result-canvas', 'noise-canvas', 'edit-original-canvas', 'edit-protected-canvas'];

/** No result on show: the figures and their captions go, and the room their display size took; the editor view's
 * with them, as it shows what an editor makes of that result. */
function clearResult() {
  for (const id of RESULT_CANVASES) {
    $(id).width = 0;
    $(id).height = 0;
    $(id).style.width = '';
    $(id).style.height = '';
  }
  $('results').hidden = true;
  $('edits').hidden = true;
  $('edit').hidden = true;
  $('edit-status').textContent = '';
}

/** The mask was edited: a result protects the old one, so it is taken away rather than saved by mistake. */
function maskChanged() {
  if (state.result) {
    state.result = null;
    clearResult();
    setStatus('The mask changed: press Protect again.');
  }
  refreshButtons();
}

// --- the model ----------------------------------------------------------------------------------

async function webgpuAvailable() {
  try {
    return Boolean(navigator.gpu && await navigator.gpu.requestAdapter());
  } catch {
    return false;
  }
}

async function loadModels() {
  ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
  // threads need SharedArrayBuffer, i.e. a cross-origin-isolated page (`paintguard web` sends the headers)
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(8, navigator.hardwareConcurrency || 1) : 1;
  try {
    const response = await fetch('models.json');
    if (!response.ok) throw new Error(`HTTP ${response.status} for models.json`);
    const listed = await response.json();
    state.models = listed.models.map((m) => ({ ...m, session: null, info: null }));
    if (!state.models.length) throw new Error('models.json lists no model');
    const inpainter = listed.inpainter;
    state.inpainter = inpainter ? { ...inpainter, session: null, info: null } : null;
  } catch (err) {
    throw notLoaded(err);
  }
  const gpu = await webgpuAvailable();
  // WebAssembly runs in a worker (the proxy), so the page stays responsive during a long run; the proxy
  // takes WebAssembly only, so with a GPU both run from the page itself
  ort.env.wasm.proxy = !gpu;
  state.providers = gpu ? ['webgpu', 'wasm'] : ['wasm'];
  await loadSession(state.models[0]);
  // the others' bytes now (a few MB), so that "works offline once loaded" holds for large images too; a failure
  // here is left for the first image that needs that model to report
  Promise.allSettled(state.models.slice(1).map(fetchModel)).then((results) => {
    const missed = results.findIndex((r) => r.status === 'rejected');
    if (missed >= 0) { // the first model that did not come sets the size above which the page needs the server
      $('model-info').textContent = $('model-info').textContent.replace('Works offline once loaded.',
        `Works offline once loaded up to ${megapixels(state.models[missed].max_pixels)} MP; the model for larger `
        + 'images did not download, and is tried again when one needs it.');
    }
    document.body.dataset.models = missed >= 0 ? 'partly' : 'fetched'; // tests wait on it
  });
  const { eps, source, sha256 } = state.models[0].info;
  $('eps-levels').textContent = `±${Math.floor(eps * 255)}`;
  const threads = state.provider === 'wasm' ? `, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? 's' : ''}` : '';
  // each later model takes the images above the limit of the one before it
  const others = state.models.slice(1).map((m, i) => `above ${megapixels(state.models[i].max_pixels)} MP a faster one (${m.file})`);
  $('model-info').textContent = `Model: ${source} (sha256 ${sha256.slice(0, 12)}…), eps ${eps}${others.length ? `; ${others.join(', ')}` : ''}; `
    + `onnxruntime-web ${ort.env.versions?.web ?? ''} on ${state.provider}${threads}. Works offline once loaded.`;
}

/** What the page says when models.json or a model file cannot be fetched (no final full stop). */
function notLoaded(err) {
  // fetch itself fails (a TypeError) when no server answers: the page is built, its server has stopped
  const hint = err instanceof TypeError
    ? "the page's server cannot be reached: start 'paintguard web' again, then retry"
    : "build the page with 'make web' and serve it with 'paintguard web'";
  return new Error(`the model did not load (${err.message}); ${hint}`);
}

/** Fetch one model of models.json and read its metadata (once; a failed fetch is tried again when needed): a
 * generator's, or the editor view's inpainter's. */
function fetchModel(model) {
  model.fetched ??= (async () => {
    try {
      const response = await fetch(model.file);
      if (!response.ok) throw new Error(`HTTP ${response.status} for ${model.file}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      model.info = (model === state.inpainter ? inpainterInfo : generatorInfo)(bytes);
      return bytes;
    } catch (err) {
      model.fetched = null;
      throw notLoaded(err);
    }
  })();
  return model.fetched;
}

/** Fetch one model of models.json and start its onnxruntime session (once). */
async function loadSession(model) {
  if (model.session) return model;
  const bytes = await fetchModel(model);
  // the generators keep to the provider the first one loaded on; the editor view's inpainter tries each in turn
  const inpainter = model === state.inpainter;
  const providers = state.provider && !inpainter ? [state.provider] : state.providers;
  for (const provider of providers) {
    try {
      model.session = await ort.InferenceSession.create(bytes, { executionProviders: [provider], graphOptimizationLevel: 'all' });
      model.provider = provider;
      if (!inpainter) state.provider = provider;
      model.fetched = null; // the session holds the model now
      break;
    } catch (err) {
      if (provider === providers[providers.length - 1]) throw new Error(`the model did not load in onnxruntime-web: ${err.message}`);
    }
  }
  return model;
}

/** Whether the editor view's inpainter takes ``image`` (the page has one, and the image is within its size). */
const editorTakes = (image) => Boolean(state.inpainter && image
  && image.width * image.height <= state.inpainter.max_pixels);

/** The first model that takes an image of this many pixels (the last one takes any the page opens). */
function modelFor(pixels) {
  return state.models.find((m) => pixels <= m.max_pixels) ?? state.models[state.models.length - 1];
}

const megapixels = (pixels) => (pixels / 1e6).toFixed(1);

// --- opening images ----------------------------------------------------------------------------

/** The file's header fields (``imageSize``) and its ``bytes``, refused when too large or truncated. */
async function readHeader(file) {
  if (file.size > MAX_FILE_BYTES) throw new FileFormatError(`the file is ${(file.size / 1e6).toFixed(0)} MB; the page takes at most ${MAX_FILE_BYTES / 1e6} MB`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const head = imageSize(bytes);
  if (head.truncated) throw new FileFormatError(`the ${head.format} file is truncated`);
  return { ...head, bytes };
}

/** Focus back on the file picker a keyboard user opened the file with: disabled while it was read, it lost it. */
function refocus(element) {
  if (element instanceof HTMLInputElement && !element.disabled && document.activeElement === document.body) element.focus();
}

/** Read a file with ``read``, the page busy meanwhile (nothing else opens), ``failed`` told why it could not;
 * focus goes back to the file picker a keyboard user started from. */
async function reading(read, failed) {
  if (state.busy) return;
  const focused = document.activeElement;
  clearError();
  state.busy = true;
  working(true);
  refreshButtons();
  try {
    await read();
  } catch (err) {
    failed(err);
  }
  state.busy = false;
  refreshButtons();
  refocus(focused);
  working(false);
}

/** Open the first of the dropped files, saying so when there were more, or why none opens during a run. */
function dropped(files) {
  if (!files.length) return;
  if (state.busy) {
    setStatus(`Busy: '${files[0].name}' was not opened; drop it again when this is done.`);
    return;
  }
  const others = files.length - 1;
  openImage(files[0], others ? `Opened the first of the ${files.length} dropped files; the page protects one image at a time. ` : '');
}

/** Open ``file`` as the image to protect; ``note`` goes before the status line that follows. */
function openImage(file, note = '') {
  return reading(async () => {
    const head = await readHeader(file);
    const pixels = head.width * head.height;
    if (pixels > MAX_PIXELS) {
      throw new FileFormatError(`it is ${head.width}x${head.height} = ${(pixels / 1e6).toFixed(1)} MP; this page takes at most `
        + `${(MAX_PIXELS / 1e6).toFixed(1)} MP (browser memory). Use 'paintguard protect' for larger images`);
    }
    if (Math.min(head.width, head.height) < MIN_SIDE) {
      throw new FileFormatError(`it is ${head.width}x${head.height}; at least ${MIN_SIDE} px on each side are needed`);
    }
    setStatus('Decoding…');
    const image = await decodePixels(head.bytes, head.format);
    if (image.width * image.height !== pixels) throw new FileFormatError('its header and its pixels disagree on its size');
    image.profile = await rgbProfile(head.bytes, head.format);
    const large = state.models.length && modelFor(pixels) !== state.models[0]
      ? `; above ${megapixels(state.models[0].max_pixels)} MP the page protects with a faster generator that keeps less `
        + 'of the optimiser\'s effect (\'paintguard protect\' runs the default at any size)' : '';
    if (state.image) state.previous = { image: state.image, mask: editor.history() };
    show({ ...image, name: file.name, info: `${file.name}: ${head.format}, ${image.width}x${image.height}${large}` });
    const back = state.previous?.mask.ops.length ? ` Undo reopens '${state.previous.image.name}' with its mask.` : '';
    const next = loaded() ? 'Paint the region to protect, then press Protect.' : 'Loading the model…';
    if (state.modelError) showError(state.modelError);
    else setStatus(note + next + back);
  }, (err) => showError(`Cannot open '${file.name}': ${err.message}.`));
}

/** Put ``image`` on the page with an empty mask (or ``mask``, an earlier ``editor.history()``), no result. */
function show(image, mask = null) {
  state.image = image;
  state.result = null;
  const view = $('image-canvas');
  view.width = image.width;
  view.height = image.height;
  view.getContext('2d').putImageData(new ImageData(image.rgba, image.width, image.height), 0, 0);
  if (mask) editor.restore(mask); else editor.reset(image.width, image.height);
  refit();
  clearResult();
  const slider = $('brush-size');
  slider.max = String(Math.max(8, Math.round(Math.min(image.width, image.height) / 2)));
  slider.value = String(Math.max(2, Math.round(Math.min(image.width, image.height) / 12)));
  $('brush-size-value').textContent = slider.value;
  $('image-info').textContent = image.info;
}

/** Undo the mask's last edit or, with none left, bring back the image this one replaced and its mask. */
function undo() {
  if (editor.canUndo()) {
    editor.undo();
    maskChanged();
    return;
  }
  if (!state.previous) return;
  const replaced = state.image.name;
  const { image, mask } = state.previous;
  state.previous = null;
  show(image, mask);
  clearError();
  setStatus(`Reopened '${image.name}'${mask.ops.length ? ' with its mask' : ''}, in place of '${replaced}'.`);
  refreshButtons();
}

function openMask(file) {
  return reading(async () => {
    if (!state.image) throw new FileFormatError('open the image first');
    const head = await readHeader(file);
    const { width, height } = state.image;
    // the size is known before decoding, so a wrong-size mask (or a bomb) is refused unread;
    // only the pixel count is compared here, as EXIF orientation may swap the sides
    if (head.width * head.height !== width * height) {
      throw new FileFormatError(`the mask is ${head.width}x${head.height} but the image is ${width}x${height}`);
    }
    // the browser rounds 16-bit samples to 8 bits: a label mask of 1s would mark nothing, where the CLI reads it whole
    const mask = head.format === 'PNG' && head.bitDepth === 16
      ? await sixteenBitMask(head.bytes) : await decodePixels(head.bytes, head.format, { forMask: true });
    if (mask.width !== width || mask.height !== height) {
      // as the CLI says it of a mask drawn on a photo stored sideways, which both show upright
      const turned = mask.width === height && mask.height === width
        ? ' (turned: draw the mask on the image as it is shown)' : '';
      throw new FileFormatError(`the mask is ${mask.width}x${mask.height} but the image is ${width}x${height}`
        + turned);
    }
    const region = mask.region ?? maskRegion(mask.rgba, width * height);
    if (!region.includes(1)) {
      throw new FileFormatError(mask.rgba ? emptyMaskReason(mask.rgba, width * height)
        : 'it marks nothing: every pixel is black or transparent');
    }
    editor.load(region);
    state.busy = false;
    const replaced = state.result !== null;
    maskChanged();
    setStatus(`Loaded the mask '${file.name}'${replaced ? ': press Protect again' : ''}.`);
  }, (err) => showError(`Cannot use the mask '${file.name}': ${err.message}.`));
}

// --- protecting ---------------------------------------------------------------------------------

async function protect() {
  if (state.busy || !state.image) return;
  clearError();
  const image = state.image;
  const { width, height, rgba } = image;
  const protectedCount = editor.count();
  if (protectedCount === 0) { showError('The mask is empty: paint the region to protect (or load a mask) first.'); return; }
  if (protectedCount === width * height) { showError(`${FULL_MASK[0].toUpperCase()}${FULL_MASK.slice(1)}; leave some of the image unmasked.`); return; }
  state.busy = true;
  working(true);
  refreshButtons();
  setStatus(`Protecting on ${state.provider}…`);
  await new Promise((resolve) => setTimeout(resolve, 0)); // let the status paint before the work starts
  try {
    const start = performance.now();
    const model = await loadSession(modelFor(width * height));
    const inputs = networkInputs(rgba, editor.mask, width, height);
    const colour = colourName(inputs.target); // now: run() hands the buffers to the worker
    const feeds = {
      image: new ort.Tensor('float32', inputs.image, [1, 3, height, width]),
      mask: new ort.Tensor('float32', inputs.mask, [1, 1, height, width]),
      target: new ort.Tensor('float32', inputs.target, [1, 3]),
    };
    const runStart = performance.now();
    const output = await model.session.run(feeds);
    const runEnd = performance.now();
    const noise = output.noise.data;
    const pixels = protectedPixels(rgba, noise, width, height, model.info.eps);
    output.noise.dispose?.();
    $('results').hidden = false; // before drawing: the figures' width is measured
    drawTo($('result-canvas'), pixels, width, height);
    drawTo($('noise-canvas'), noiseView(rgba, pixels, NOISE_GAIN), width, height);
    state.result = { pixels, name: `${image.name.replace(/\.[^.]*$/, '')}_protected.png`, profile: image.profile };
    offerEdit(image);
    const total = performance.now() - start;
    const seconds = (ms) => (ms / 1000).toFixed(2);
    setStatus(`Protected in ${seconds(total)} s (${model.info.source.replace(/\.safetensors$/, '')}, network `
      + `${seconds(runEnd - runStart)} s on ${state.provider}), target colour ${colour}. `
      + `Download the PNG: |saved - original| <= ${model.info.eps} on every pixel.`);
    $('status').dataset.generator = model.info.source;
    $('status').dataset.networkMs = String(runEnd - runStart);
    $('status').dataset.totalMs = String(total);
  } catch (err) {
    showError(`Protection failed: ${failure(err, width, height, 'paintguard protect')}.`);
  } finally {
    state.busy = false;
    refreshButtons();
    working(false);
  }
}

/** Why a run failed, in words: onnxruntime's out-of-memory error says what to do about it. */
function failure(err, width, height, command) {
  const message = String(err.message ?? err).replace(/\.$/, '');
  if (!/bad_alloc|out of memory/i.test(message)) return message;
  // WebAssembly's memory only grows: what earlier runs left fragmented stays until the page is reloaded
  return `the browser ran out of memory for this ${width}x${height} image (onnxruntime's WebAssembly memory, 4 GB `
    + `at most); reload the page and try again, or use '${command}', which takes any size (${message})`;
}

// --- the editor view ----------------------------------------------------------------------------

/** Step 4 under a new result: what it does, or why this image is too large for it. */
function offerEdit(image) {
  if (!state.inpainter) return; // a page built without an inpainter (models.json lists none)
  $('edit').hidden = false;
  $('edits').hidden = true; // edits of an earlier result go with it
  $('edit-status').textContent = '';
  $('edit-note').textContent = editorTakes(image)
    ? 'the inpainter protection was trained against (a LaMa network) fills the mask in the original and in the '
      + 'protected image, as an editing tool would; its model loads on the first press.'
    : `this image is ${megapixels(image.width * image.height)} MP; the editor view takes at most `
      + `${megapixels(state.inpainter.max_pixels)} MP (browser memory): 'paintguard inpaint' shows it for any size.`;
}

/** Inpaint the original and the protected image with the editor view's inpainter; show both and how far the
 * protection moved the fill towards the target colour, as `paintguard inpaint --original` says it. */
async function inpaint() {
  if (state.busy || !state.result || !editorTakes(state.image)) return;
  clearError();
  const { width, height, rgba } = state.image;
  const { pixels } = state.result;
  // the result's mask (an edited mask takes the result away), or the one an editor draws instead of it
  const editorMaskName = $('editor-mask').value;
  const mask = editorMask(editorMaskName, editor.mask, width, height);
  const region = whichMask(editorMaskName);
  const Region = `${region[0].toUpperCase()}${region.slice(1)}`;
  let count = 0;
  for (let i = 0; i < mask.length; i++) count += mask[i];
  if (count === 0 || count === mask.length) { // as `paintguard inpaint --editor-mask` refuses it
    showError(count ? `${Region} covers the whole image: nothing is left for the inpainter to see.`
      : `${Region} is empty: nothing to inpaint.`);
    return;
  }
  state.busy = true;
  working(true);
  refreshButtons();
  $('edit-status').textContent = 'Inpainting the original…';
  await new Promise((resolve) => setTimeout(resolve, 0));
  try {
    const start = performance.now();
    const model = await loadSession(state.inpainter);
    const n = width * height;
    const edit = async (image) => { // one image at a time: half the peak memory of a batch of two
      const inputs = networkInputs(image, mask, width, height);
      const target = inputs.target;
      const output = await model.session.run({
        image: new ort.Tensor('float32', inputs.image, [1, 3, height, width]),
        mask: new ort.Tensor('float32', inputs.mask, [1, 1, height, width]),
      });
      const edited = output.edited.data;
      output.edited.dispose?.();
      return { edited, target };
    };
    const original = await edit(rgba); // the target colour is the original's, as protection took it
    $('edit-status').textContent = 'Inpainting the protected image…';
    const protectedEdit = await edit(pixels);
    $('edits').hidden = false;
    // around the mask, where the two differ: the whole image would show a small region too small to judge
    const box = maskBox(mask, width, height);
    const [boxWidth, boxHeight] = [box[2] - box[0], box[3] - box[1]];
    for (const [id, { edited }] of [['edit-original-canvas', original], ['edit-protected-canvas', protectedEdit]]) {
      drawTo($(id), cropPixels(editedPixels(edited, n), width, box), boxWidth, boxHeight);
    }
    $('edits').dataset.box = box.join(',');
    const attackOriginal = attackLoss(original.edited, mask, original.target, n);
    const attackProtected = attackLoss(protectedEdit.edited, mask, original.target, n);
    const summary = editSummary({ inpainter: model.info.source.replace(/\.safetensors$/, ''), target: original.target,
      attackProtected, attackOriginal, levels: levelsApart(pixels, rgba), editorMaskName });
    const seconds = ((performance.now() - start) / 1000).toFixed(1);
    $('edit-status').textContent = `${summary}; ${seconds} s on ${model.provider}.`;
    Object.assign($('edit-status').dataset, { attackOriginal, attackProtected, inpainter: model.info.source,
      editorMask: editorMaskName });
  } catch (err) {
    $('edit-status').textContent = '';
    showError(`The editor view failed: ${failure(err, width, height, 'paintguard inpaint')}.`);
  } finally {
    state.busy = false;
    refreshButtons();
    working(false);
  }
}

function drawTo(canvas, rgba, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(rgba, width, height), 0, 0);
  fit(canvas, width, height, resultWidth(), 0.45);
}

// side by side where two fit (the figures wrap under each other on a phone)
const resultWidth = () => ($('run').clientWidth >= 640 ? ($('run').clientWidth - 60) / 2 : $('run').clientWidth - 40);

/** Size the canvases to the window again: the mask overlay is laid over the image canvas's displayed size. */
function refit() {
  if (state.image) fit($('image-canvas'), state.image.width, state.image.height, $('paint').clientWidth - 40, 0.65);
  $('mask-canvas').classList.toggle('pixelated', $('image-canvas').classList.contains('pixelated'));
  for (const id of RESULT_CANVASES) {
    if ($(id).width) fit($(id), $(id).width, $(id).height, resultWidth(), 0.45);
  }
}

/** Display size: as large as fits (in maxWidth px and a fraction of the window's height), small images enlarged. */
function fit(canvas, width, height, maxWidth, maxHeight) {
  const scale = Math.min(maxWidth / width, window.innerHeight * maxHeight / height);
  canvas.style.width = `${Math.round(width * scale)}px`;
  canvas.style.height = `${Math.round(height * scale)}px`;
  canvas.classList.toggle('pixelated', scale > 2); // enlarged pixels stay sharp, as the noise is per pixel
}

async function download() {
  const canvas = $('result-canvas');
  let blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (!blob) { showError('The browser could not encode the PNG.'); return; }
  if (state.result.profile) {
    const png = await withProfile(new Uint8Array(await blob.arrayBuffer()), state.result.profile);
    blob = new Blob([png], { type: 'image/png' });
  }
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = state.result.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

// --- wiring -------------------------------------------------------------------------------------

function imageCoordinates(event) {
  const rect = $('mask-canvas').getBoundingClientRect();
  return [(event.clientX - rect.left) * editor.width / rect.width, (event.clientY - rect.top) * editor.height / rect.height];
}

function wire() {
  $('image-input').addEventListener('change', (e) => { if (e.target.files[0]) openImage(e.target.files[0]); e.target.value = ''; });
  $('mask-input').addEventListener('change', (e) => { if (e.target.files[0]) openMask(e.target.files[0]); e.target.value = ''; });
  const drop = $('open');
  for (const type of ['dragenter', 'dragover']) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add('dragging'); });
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('dragging'));
  // a file dropped anywhere on the page opens, on the painting as on the box (and never makes the browser
  // navigate away from the page and lose the work)
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => { e.preventDefault(); dropped([...(e.dataTransfer?.files ?? [])]); });

  const overlay = $('mask-canvas');
  overlay.addEventListener('pointerdown', (e) => {
    if (!state.image || state.busy || e.button !== 0) return;
    overlay.setPointerCapture(e.pointerId);
    editor.begin(...imageCoordinates(e), Number($('brush-size').value), $('tool-eraser').checked);
  });
  overlay.addEventListener('pointermove', (e) => { if (editor.stroke) editor.extend(...imageCoordinates(e)); });
  for (const type of ['pointerup', 'pointercancel']) {
    overlay.addEventListener(type, () => {
      const stroked = editor.stroke !== null;
      editor.end();
      if (stroked) maskChanged();
    });
  }
  $('brush-size').addEventListener('input', (e) => { $('brush-size-value').textContent = e.target.value; });
  $('undo').addEventListener('click', undo);
  $('clear').addEventListener('click', () => { editor.clear(); maskChanged(); });
  $('protect').addEventListener('click', protect);
  $('download').addEventListener('click', download);
  $('inpaint').addEventListener('click', inpaint);
  for (const [name, [drawn]] of Object.entries(EDITOR_MASKS)) {
    $('editor-mask').append(new Option(`a mask ${drawn}`, name));
  }
  $('editor-mask').addEventListener('change', () => {
    if ($('edits').hidden) return;
    $('edits').hidden = true; // the edits on show are of another mask
    $('edit-status').textContent = 'The editor\'s mask changed: press See what an editor gets again.';
  });
  window.addEventListener('keydown', (e) => {
    // as the Undo button: not while a file is opened or protected, whose run reads the mask
    if ((e.ctrlKey || e.metaKey) && e.key === 'z' && !$('undo').disabled) undo();
  });
  window.addEventListener('resize', refit);
}

wire();
working(false);
loadModels()
  .then(() => {
    // a file refused while the model loaded keeps its error's status line
    if ($('error').hidden) {
      setStatus(state.image ? 'Paint the region to protect, then press Protect.' : 'Open an image to begin.');
    }
    document.body.dataset.model = 'ready';
  })
  .catch((err) => {
    state.modelError = `${err.message}.`;
    showError(state.modelError);
    document.body.dataset.model = 'failed';
  })
  .finally(refreshButtons);

// for tests and the curious: the page's state, read-only by convention
window.paintguard = { state, editor, MAX_PIXELS };
