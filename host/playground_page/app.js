// The playground page's behaviour: drawing canvases, the three panels and their calls to the JSON
// API. Pixels are shown as the API returns them, each value v on [0, 1] as the grey Math.round(255 v),
// so what a panel shows can be checked against the API byte for byte.
"use strict";

const LATENT_RANGE = 3;     // sliders and the latent map span [-3, 3], about 99.7% of N(0, 1)
const MAX_SLIDERS = 16;     // a larger latent shows its first 16 dimensions
const MAP_SIDE = 20;        // the 2-D latent map decodes a 20 x 20 grid
const CANVAS_DECIMALS = 1000;  // drawing pixels are sent with 3 decimals, which keeps requests small

const $ = (id) => document.getElementById(id);

const state = {
  models: [],
  testImages: { count: 0, rows: 0, cols: 0 },
  model: null,          // the selected model's description
  z: [],                // Explore's latent, all dimensions
  lastReconstruct: null, // the last reconstruct request and its answer (read by the browser test)
  drawings: null,
  busy: 0,              // API calls and live updates under way: 0 when the page shows its last answers
};
window.playground = state;

// --- the API ---

async function api(endpoint, body) {
  state.busy += 1;
  try {
    const response = await fetch(`/api/${endpoint}`, body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(`${endpoint}: ${answer.error || response.status}`);
    return answer;
  } finally {
    state.busy -= 1;
  }
}

function showStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// Runs task() now, or once more after the running call ends: live updates never pile up requests.
function coalesced(task) {
  let running = false, again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    state.busy += 1;
    do {
      again = false;
      try {
        await task();
      } catch (error) {
        showStatus(error.message, true);
      }
    } while (again);
    state.busy -= 1;
    running = false;
  };
  return run;
}

// --- pixels ---

function grey(value) { return Math.round(255 * Math.min(1, Math.max(0, value))); }

// Puts `pixels` (rows * cols values on [0, 1]) into the canvas at its own size.
function drawPixels(canvas, pixels, rows, cols) {
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  const image = context.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; ++i) {
    const g = grey(pixels[i]);
    image.data.set([g, g, g, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

function imageSide() {
  const m = state.model;
  return { rows: m.image_rows || Math.round(Math.sqrt(m.input)), cols: m.image_cols || Math.round(Math.sqrt(m.input)) };
}

function takesDrawings() {
  const { rows, cols } = imageSide();
  return state.model.input === 784 && rows === 28 && cols === 28;
}

// --- drawing canvases: strokes of pointer input (mouse, pen, touch), kept for undo ---

class Drawing {
  constructor(canvas, onStroke, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.strokes = [];
    this.testImage = null;  // {pixels, rows, cols} when a test image stands in for a drawing
    this.pointer = null;    // the id of the pointer drawing the current stroke
    this.enabled = true;
    this.onStroke = onStroke;  // while a stroke is drawn
    this.onChange = onChange;  // after a stroke ends, on undo and on clear
    canvas.addEventListener("pointerdown", (event) => this.start(event));
    canvas.addEventListener("pointermove", (event) => this.extend(event));
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"])
      canvas.addEventListener(end, (event) => this.finish(event));
    this.redraw();
  }

  // Off for a model that does not take 28x28 drawings.
  setEnabled(enabled) {
    this.enabled = enabled;
    this.canvas.classList.toggle("disabled", !enabled);
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * this.canvas.width / box.width,
            (event.clientY - box.top) * this.canvas.height / box.height];
  }

  // One pointer draws at a time, with its main button (a mouse's left, a pen's tip, a finger): a
  // second finger or a right click does not join the stroke.
  start(event) {
    event.preventDefault();
    if (!this.enabled || this.pointer !== null || event.button !== 0) return;
    this.pointer = event.pointerId;
    this.canvas.setPointerCapture(event.pointerId);
    if (this.testImage) { this.testImage = null; this.strokes = []; }
    this.strokes.push([this.point(event)]);
    this.redraw();
    this.onStroke();
  }

  extend(event) {
    if (event.pointerId !== this.pointer) return;
    this.strokes[this.strokes.length - 1].push(this.point(event));
    this.redraw();
    this.onStroke();
  }

  finish(event) {
    if (event.pointerId !== this.pointer) return;
    this.pointer = null;
    this.onChange();
  }

  undo() { this.strokes.pop(); this.testImage = null; this.redraw(); this.onChange(); }
  clear() { this.reset(); this.onChange(); }
  reset() { this.strokes = []; this.testImage = null; this.redraw(); }

  showTestImage(image) {
    this.strokes = [];
    this.testImage = image;
    this.redraw();
    this.onChange();
  }

  isEmpty() { return !this.testImage && this.strokes.length === 0; }

  redraw() {
    const { canvas, context } = this;
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (this.testImage) {
      const { pixels, rows, cols } = this.testImage;
      const small = document.createElement("canvas");
      drawPixels(small, pixels, rows, cols);
      context.imageSmoothingEnabled = false;
      context.drawImage(small, 0, 0, canvas.width, canvas.height);
      return;
    }
    // A stroke about a tenth of the canvas wide: once the digit is scaled into 20 x 20 pixels, about
    // the two-pixel pen of MNIST's digits.
    context.strokeStyle = context.fillStyle = "#fff";
    context.lineWidth = canvas.width / 12;
    context.lineCap = context.lineJoin = "round";
    for (const stroke of this.strokes) {
      context.beginPath();
      context.moveTo(...stroke[0]);
      for (const p of stroke.slice(1)) context.lineTo(...p);
      if (stroke.length === 1) context.lineTo(stroke[0][0] + 0.01, stroke[0][1]);
      context.stroke();
    }
  }

  // The request's image: the test image's pixels, or the canvas {width, height, pixels} (ink bright,
  // the red channel on [0, 1]), which the server prepares MNIST-style.
  image() {
    if (this.testImage) return this.testImage.pixels;
    const { width, height } = this.canvas;
    const rgba = this.context.getImageData(0, 0, width, height).data;
    const pixels = new Array(width * height);
    for (let i = 0; i < width * height; ++i) pixels[i] = Math.round(rgba[4 * i] / 255 * CANVAS_DECIMALS) / CANVAS_DECIMALS;
    return { width, height, pixels };
  }
}

// --- Reconstruct ---

// The Reconstruct outputs, blank: for an empty drawing, and a model that takes no drawings.
function clearReconstruction() {
  for (const id of ["input", "reconstruction"]) drawPixels($(id), new Array(784).fill(0), 28, 28);
  drawLatentBars([]);
  state.lastReconstruct = null;
}

const reconstruct = coalesced(async () => {
  if (!state.model || !takesDrawings()) return;
  if (drawings.reconstruct.isEmpty()) {
    clearReconstruction();
    document.body.dataset.reconstructions = Number(document.body.dataset.reconstructions || 0) + 1;
    return;
  }
  const request = { model: state.model.id, canvas: drawings.reconstruct.image() };
  const answer = await api("reconstruct", request);
  if (request.model !== state.model.id) return;  // the model changed while this was decoded
  drawPixels($("input"), answer.input, 28, 28);
  drawPixels($("reconstruction"), answer.pixels, 28, 28);
  drawLatentBars(answer.mu);
  state.lastReconstruct = { request, answer };
  document.body.dataset.reconstructions = Number(document.body.dataset.reconstructions || 0) + 1;
  showStatus(`reconstructed; mu = [${answer.mu.slice(0, 4).map((v) => v.toFixed(2)).join(", ")}${answer.mu.length > 4 ? ", ..." : ""}]`);
});

function drawLatentBars(mu) {
  const canvas = $("mu-chart");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.fillStyle = "#000";
  context.fillRect(0, 0, width, height);
  context.fillStyle = "#3a404c";
  context.fillRect(0, height / 2, width, 1);
  if (mu.length === 0) return;
  const bar = width / mu.length;
  context.fillStyle = "#6aa8ff";
  mu.forEach((value, i) => {
    const h = Math.max(-1, Math.min(1, value / LATENT_RANGE)) * height / 2;
    context.fillRect(i * bar + bar * 0.1, height / 2 - Math.max(h, 0), Math.max(1, bar * 0.8), Math.abs(h));
  });
}

// --- Interpolate ---

const interpolate = coalesced(async () => {
  const ends = [drawings.a, drawings.b];
  if (ends.some((d) => d.isEmpty())) { $("strip").replaceChildren(); return; }
  const frames = Number($("frames").value);  // the server checks it: a bad one is its 400 line
  const request = { model: state.model.id, images: ends.map((d) => d.image()), frames, mode: $("path-mode").value };
  const answer = await api("interpolate", request);
  if (request.model !== state.model.id) return;
  const { rows, cols } = imageSide();
  $("strip").replaceChildren(...answer.frames.map((pixels) => {
    const canvas = document.createElement("canvas");
    drawPixels(canvas, pixels, rows, cols);
    return canvas;
  }));
  document.body.dataset.interpolations = Number(document.body.dataset.interpolations || 0) + 1;
  showStatus(`${frames} frames, ${request.mode}`);
});

async function pickTestImage(end, index) {
  const t = state.testImages;
  if (!Number.isInteger(index) || index < 0 || index >= t.count) throw new Error(`test image: an index from 0 to ${t.count - 1}`);
  const answer = await api("test_image", { index });
  $(`index-${end}`).value = index;
  drawings[end].showTestImage(answer);
  showStatus(`test image ${index} (label ${answer.label})`);
}

// --- Explore ---

const decodeZ = coalesced(async () => {
  const request = { model: state.model.id, z: state.z.slice() };
  const answer = await api("decode", request);
  if (request.model !== state.model.id) return;
  const { rows, cols } = imageSide();
  drawPixels($("decoded"), answer.pixels, rows, cols);
  document.body.dataset.decodes = Number(document.body.dataset.decodes || 0) + 1;
  drawMapMarker();
});

function buildSliders() {
  const latent = state.model.latent;
  const shown = Math.min(latent, MAX_SLIDERS);
  const sliders = [];
  for (let i = 0; i < shown; ++i) {
    const label = document.createElement("label");
    label.textContent = `z${i}`;
    label.htmlFor = `z-${i}`;
    const slider = Object.assign(document.createElement("input"), {
      type: "range", id: `z-${i}`, min: -LATENT_RANGE, max: LATENT_RANGE, step: 0.01, value: 0,
    });
    const value = document.createElement("output");
    slider.addEventListener("input", () => {
      state.z[i] = Number(slider.value);
      value.textContent = state.z[i].toFixed(2);
      decodeZ();
    });
    sliders.push(label, slider, value);
  }
  $("sliders").replaceChildren(...sliders);
  $("sliders-note").textContent = latent > shown
    ? `The first ${shown} of ${latent} dimensions; the others keep their values (0, or the last prior sample).` : "";
  setLatent(new Array(latent).fill(0));
}

// Sets Explore's latent, moves the sliders to it (a value past +-3 shows at the slider's end) and decodes.
function setLatent(z) {
  if (z.length !== state.model.latent) throw new Error(`a latent of ${state.model.latent} values expected`);
  state.z = z;
  const outputs = $("sliders").querySelectorAll("output");
  $("sliders").querySelectorAll("input").forEach((slider, i) => {
    slider.value = z[i];
    outputs[i].textContent = z[i].toFixed(2);
  });
  decodeZ();
}

async function samplePrior() {
  const seed = Math.floor(Math.random() * 2 ** 32);
  const model = state.model.id;
  const answer = await api("sample", { model, count: 1, seed });
  if (model !== state.model.id) return;  // the model changed while this was drawn
  setLatent(answer.latents[0]);
  showStatus(`z ~ N(0, I), seed ${seed}`);
}

// The map of a 2-D latent: decodes of a MAP_SIDE x MAP_SIDE grid over [-3, 3]^2, z0 rightwards and z1
// upwards, kept as a picture under the marker of the current z.
let mapPicture = null;

async function buildLatentMap() {
  const figure = $("latent-map-figure");
  mapPicture = null;
  figure.hidden = state.model.latent !== 2;
  if (figure.hidden) return;
  const latents = [];
  for (let row = 0; row < MAP_SIDE; ++row)
    for (let col = 0; col < MAP_SIDE; ++col) latents.push([mapCoordinate(col), -mapCoordinate(row)]);
  const model = state.model.id;
  const answer = await api("decode", { model, latents });
  if (model !== state.model.id) return;
  const { rows, cols } = imageSide();
  const canvas = $("latent-map");
  canvas.width = MAP_SIDE * cols;
  canvas.height = MAP_SIDE * rows;
  const context = canvas.getContext("2d");
  const tile = document.createElement("canvas");
  answer.images.forEach((pixels, i) => {
    drawPixels(tile, pixels, rows, cols);
    context.drawImage(tile, (i % MAP_SIDE) * cols, Math.floor(i / MAP_SIDE) * rows);
  });
  mapPicture = context.getImageData(0, 0, canvas.width, canvas.height);
  drawMapMarker();
}

// The centre of grid cell i on [-3, 3].
function mapCoordinate(i) { return -LATENT_RANGE + (i + 0.5) * 2 * LATENT_RANGE / MAP_SIDE; }

function drawMapMarker() {
  if (!mapPicture || state.model.latent !== 2) return;
  const canvas = $("latent-map");
  const context = canvas.getContext("2d");
  context.putImageData(mapPicture, 0, 0);
  const x = (state.z[0] + LATENT_RANGE) / (2 * LATENT_RANGE) * canvas.width;
  const y = (LATENT_RANGE - state.z[1]) / (2 * LATENT_RANGE) * canvas.height;
  context.strokeStyle = "#ff5a5a";
  context.lineWidth = 3;
  context.beginPath();
  context.arc(x, y, 9, 0, 2 * Math.PI);
  context.stroke();
}

function clickLatentMap(event) {
  const canvas = $("latent-map");
  const box = canvas.getBoundingClientRect();
  const fx = (event.clientX - box.left) / box.width, fy = (event.clientY - box.top) / box.height;
  const round = (v) => Math.round(v * 100) / 100;
  setLatent([round((2 * fx - 1) * LATENT_RANGE), round((1 - 2 * fy) * LATENT_RANGE)]);
}

// --- models and wiring ---

function describe(m) {
  const parts = [m.architecture, `latent ${m.latent}`, `${m.epochs_trained} epoch${m.epochs_trained === 1 ? "" : "s"}`];
  if (m.batches_into_epoch) parts.push(`+${m.batches_into_epoch} batches`);
  if (m.test_loss !== null) parts.push(`test loss ${m.test_loss.toFixed(2)} per image`);
  else if (m.best_test_loss !== null) parts.push(`best test loss ${m.best_test_loss.toFixed(2)} per image`);
  parts.push(m.file);
  return parts.join(" · ");
}

function selectModel(id) {
  state.model = state.models[id];
  $("model-info").textContent = describe(state.model);
  const drawable = takesDrawings();
  const { rows, cols } = imageSide();
  const testImagesFit = state.testImages.count > 0 && state.testImages.rows === rows && state.testImages.cols === cols;
  document.querySelectorAll(".test-pick").forEach((el) => { el.hidden = !testImagesFit; });
  // Drawings, and test images of another shape, mean nothing to this model: its ends start empty.
  for (const d of Object.values(drawings)) {
    d.setEnabled(drawable);
    if (!drawable || (d.testImage && !testImagesFit)) d.reset();
  }
  showStatus(drawable ? "" : `this model takes ${rows}x${cols} images (${state.model.input} values); drawings ` +
    "become 28x28, so only Explore and test images serve it", !drawable);
  clearReconstruction();
  buildSliders();
  buildLatentMap().catch((error) => showStatus(error.message, true));
  reconstruct();
  interpolate();
}

function showPanel(name) {
  for (const tab of document.querySelectorAll("#tabs button")) {
    const selected = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(selected));
    $(tab.dataset.panel).hidden = !selected;
  }
}

const drawings = {
  reconstruct: new Drawing($("draw"), () => reconstruct(), () => reconstruct()),
  a: new Drawing($("draw-a"), () => {}, () => interpolate()),
  b: new Drawing($("draw-b"), () => {}, () => interpolate()),
};

state.drawings = drawings;

function wire() {
  const guarded = (action) => () => Promise.resolve(action()).catch((error) => showStatus(error.message, true));
  $("undo").addEventListener("click", () => drawings.reconstruct.undo());
  $("clear").addEventListener("click", () => drawings.reconstruct.clear());
  for (const end of ["a", "b"]) {
    $(`clear-${end}`).addEventListener("click", () => drawings[end].clear());
    $(`pick-${end}`).addEventListener("click", guarded(() => pickTestImage(end, Number($(`index-${end}`).value))));
    $(`random-${end}`).addEventListener("click",
      guarded(() => pickTestImage(end, Math.floor(Math.random() * state.testImages.count))));
  }
  $("path-mode").addEventListener("change", () => interpolate());
  $("frames").addEventListener("change", () => interpolate());
  $("run-interpolate").addEventListener("click", () => interpolate());
  $("sample-prior").addEventListener("click", guarded(samplePrior));
  $("zero-latent").addEventListener("click", () => setLatent(new Array(state.model.latent).fill(0)));
  $("latent-map").addEventListener("click", clickLatentMap);
  $("model").addEventListener("change", (event) => selectModel(Number(event.target.value)));
  for (const tab of document.querySelectorAll("#tabs button"))
    tab.addEventListener("click", () => showPanel(tab.dataset.panel));
}

async function start() {
  wire();
  const answer = await api("models");
  state.models = answer.models;
  state.testImages = answer.test_images;
  if (state.models.length === 0) throw new Error("the server has no models loaded");
  $("model").replaceChildren(...state.models.map((m) => new Option(`${m.id}: ${m.file} (latent ${m.latent})`, m.id)));
  selectModel(0);
  document.body.dataset.ready = "true";
}

start().catch((error) => showStatus(error.message, true));
