// The playground in a real browser (Debian's chromium, driven by playwright-core): trains two small
// models, serves them with `vae_cuda --serve`, then draws, interpolates and explores as a person
// would, and checks that every image the page shows is, byte for byte, what the API returns for the
// same request. A page error or a console error fails the test. Screenshots go to --out.
//
//   node playground.test.mjs --binary build/vae_cuda --data-dir data/fashion-mnist --out build/browser
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    binary: { type: "string" },
    "data-dir": { type: "string" },
    out: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const name of ["binary", "data-dir", "out"])
  if (!args[name]) throw new Error(`--${name} is required`);

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  console.error("playwright-core is not installed: run `npm ci --prefix tests/browser` (tools/test.sh does)");
  process.exit(1);
}

let failures = 0;
function check(condition, what) {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures += 1;
}

const work = mkdtempSync(path.join(tmpdir(), "vae-browser-"));
mkdirSync(args.out, { recursive: true });

// Two models of one epoch each on the CPU: a 2-D latent (the latent map) and a 20-D one (more
// dimensions than sliders).
function train(name, latent) {
  const out = path.join(work, name);
  execFileSync(args.binary, ["--train", args["data-dir"], "--device", "cpu", "--epochs", "1", "--hidden", "128",
    "--latent", String(latent), "--out", out, "--no-progress"], { stdio: ["ignore", "ignore", "inherit"] });
  return path.join(out, "checkpoint.safetensors");
}
const checkpoints = [train("latent2", 2), train("latent20", 20)];

// The server on a free port; its first lines say where.
const server = spawn(args.binary, ["--serve", ...checkpoints, "--port", "0", "--data-dir", args["data-dir"]],
  { stdio: ["ignore", "pipe", "inherit"] });
const base = await new Promise((resolve, reject) => {
  let text = "";
  server.stdout.on("data", (chunk) => {
    text += chunk;
    const match = text.match(/playground at (http:\/\/\S+\/)/);
    if (match) resolve(match[1]);
  });
  server.on("exit", (code) => reject(new Error(`vae_cuda --serve exited with ${code} before serving`)));
});
console.log(`serving at ${base}`);

async function api(endpoint, body) {
  const response = await fetch(new URL(`api/${endpoint}`, base), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${endpoint}: ${response.status} ${answer.error}`);
  return answer;
}

const grey = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));

// The red channel of a canvas, as the page drew it.
async function canvasGreys(page, selector) {
  return page.locator(selector).evaluate((canvas) => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    return Array.from({ length: data.length / 4 }, (_, i) => data[4 * i]);
  });
}

function sameGreys(shown, pixels) {
  return shown.length === pixels.length && pixels.every((v, i) => grey(v) === shown[i]);
}

// The page's last reconstruct request is of the finished drawing, exactly as its canvas holds it,
// and the input and reconstruction it shows are the API's answer to that request.
async function checkReconstruction(page, how) {
  const sentDrawing = await page.evaluate(() => window.playground.lastReconstruct !== null &&
    JSON.stringify(window.playground.lastReconstruct.request.canvas) ===
    JSON.stringify(window.playground.drawings.reconstruct.image()));
  check(sentDrawing, `${how}: the last reconstruct request carries the finished drawing`);
  if (!sentDrawing) return;
  const request = await page.evaluate(() => window.playground.lastReconstruct.request);
  check(request.canvas.pixels.some((v) => v > 0), `${how}: the drawing has ink`);
  const answer = await api("reconstruct", request);
  check(sameGreys(await canvasGreys(page, "#reconstruction"), answer.pixels),
    `${how}: the reconstruction's pixels equal the API's for that drawing`);
  check(sameGreys(await canvasGreys(page, "#input"), answer.input), `${how}: the 28x28 input shown equals the API's`);
  check(answer.input.reduce((a, b) => a + b, 0) > 5, `${how}: the input has the stroke in it`);
}

async function count(page, key) {
  return page.evaluate((k) => Number(document.body.dataset[k] || 0), key);
}

// Waits until the page has finished one more update of `key` than `before` and has nothing left
// under way (no API call, no live update queued).
async function settled(page, key, before) {
  await page.waitForFunction(([k, b]) => Number(document.body.dataset[k] || 0) > b && window.playground.busy === 0,
    [key, before]);
}

const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
let expectedBadRequests = 0;  // the 400s the test provokes, which the browser logs as console errors
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, hasTouch: true });
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (expectedBadRequests > 0 && message.text().includes("status of 400")) expectedBadRequests -= 1;
    else pageErrors.push(`console error: ${message.text()}`);
  });
  await page.goto(base);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  check((await page.locator("#model option").count()) === 2, "the model picker lists both checkpoints");
  check((await page.locator("#model-info").textContent()).includes("latent 2"), "the model's description is shown");

  // --- Reconstruct: a stroke drawn with the mouse ---
  const box = await page.locator("#draw").boundingBox();
  let before = await count(page, "reconstructions");
  await page.mouse.move(box.x + box.width * 0.45, box.y + box.height * 0.2);
  await page.mouse.down();
  for (let i = 1; i <= 20; ++i)
    await page.mouse.move(box.x + box.width * (0.45 + 0.1 * Math.sin(i / 6)), box.y + box.height * (0.2 + 0.03 * i));
  await page.mouse.up();
  await settled(page, "reconstructions", before);
  await checkReconstruction(page, "mouse");
  await page.screenshot({ path: path.join(args.out, "reconstruct.png") });

  before = await count(page, "reconstructions");
  await page.click("#undo");
  await settled(page, "reconstructions", before);
  check((await canvasGreys(page, "#input")).every((g) => g === 0) &&
    (await canvasGreys(page, "#reconstruction")).every((g) => g === 0),
    "undo removes the only stroke: input and reconstruction are blank");

  // A finger: touch events through the DevTools protocol, as a touch screen sends them.
  const touch = await context.newCDPSession(page);
  before = await count(page, "reconstructions");
  const touchAt = (fx, fy) => [{ x: box.x + box.width * fx, y: box.y + box.height * fy }];
  await touch.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: touchAt(0.3, 0.3) });
  for (let i = 1; i <= 10; ++i)
    await touch.send("Input.dispatchTouchEvent", { type: "touchMove", touchPoints: touchAt(0.3 + 0.04 * i, 0.3 + 0.03 * i) });
  await touch.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
  await settled(page, "reconstructions", before);
  await checkReconstruction(page, "touch");

  // --- Interpolate: two test images, spherical, 7 frames ---
  await page.click("#tab-interpolate");
  check(await page.locator("#pick-a").isVisible(), "test images can be picked (--data-dir)");
  await page.fill("#frames", "7");
  await page.selectOption("#path-mode", "spherical");
  await page.fill("#index-a", "3");
  await page.click("#pick-a");
  await page.waitForFunction(() => !window.playground.drawings.a.isEmpty());
  before = await count(page, "interpolations");
  await page.fill("#index-b", "11");
  await page.click("#pick-b");
  await settled(page, "interpolations", before);
  const strip = page.locator("#strip canvas");
  check((await strip.count()) === 7, "the strip has the 7 frames asked for");
  const [a, b] = [await api("test_image", { index: 3 }), await api("test_image", { index: 11 })];
  const frames = (await api("interpolate", { model: 0, images: [a.pixels, b.pixels], frames: 7, mode: "spherical" })).frames;
  let framesMatch = true;
  for (let i = 0; i < 7; ++i) framesMatch &&= sameGreys(await canvasGreys(page, `#strip canvas >> nth=${i}`), frames[i]);
  check(framesMatch, "every frame equals the API's spherical interpolation between test images 3 and 11");
  // A drawing replaces an end, and the strip follows.
  const boxA = await page.locator("#draw-a").boundingBox();
  before = await count(page, "interpolations");
  await page.mouse.move(boxA.x + boxA.width * 0.5, boxA.y + boxA.height * 0.2);
  await page.mouse.down();
  await page.mouse.move(boxA.x + boxA.width * 0.5, boxA.y + boxA.height * 0.8, { steps: 8 });
  await page.mouse.up();
  await settled(page, "interpolations", before);
  const drawnEnd = await page.evaluate(() => window.playground.drawings.a.image());
  const drawnFrames = (await api("interpolate", { model: 0, images: [drawnEnd, b.pixels], frames: 7, mode: "spherical" })).frames;
  check(sameGreys(await canvasGreys(page, "#strip canvas >> nth=0"), drawnFrames[0]),
    "after drawing end A, the first frame is the API's decode of the drawing");
  await page.screenshot({ path: path.join(args.out, "interpolate.png") });

  // --- Explore: a slider, the latent map, the prior ---
  await page.click("#tab-explore");
  check((await page.locator("#sliders input").count()) === 2, "a 2-D latent has two sliders");
  check(await page.locator("#latent-map").isVisible(), "a 2-D latent has a latent map");
  const decodedMatches = async (what) => {
    await page.waitForFunction(() => window.playground.busy === 0);
    const z = await page.evaluate(() => window.playground.z);
    const pixels = (await api("decode", { model: await page.evaluate(() => window.playground.model.id), z })).pixels;
    check(sameGreys(await canvasGreys(page, "#decoded"), pixels), `${what}: decode(z) shown equals the API's`);
    return z;
  };
  const slider = await page.locator("#z-0").boundingBox();
  before = await count(page, "decodes");
  await page.mouse.click(slider.x + slider.width * 0.8, slider.y + slider.height / 2);
  await settled(page, "decodes", before);
  const zSlider = await decodedMatches("slider z0");
  check(zSlider[0] > 1 && zSlider[1] === 0, `the slider moved z0 alone (z = ${zSlider})`);
  const map = await page.locator("#latent-map").boundingBox();
  before = await count(page, "decodes");
  await page.mouse.click(map.x + map.width * 0.25, map.y + map.height * 0.25);
  await settled(page, "decodes", before);
  const zMap = await decodedMatches("latent map click");
  check(Math.abs(zMap[0] + 1.5) < 0.05 && Math.abs(zMap[1] - 1.5) < 0.05, `the map click set z near (-1.5, 1.5) (z = ${zMap})`);
  check(Number(await page.locator("#z-1").inputValue()) === zMap[1], "the sliders follow the map click");
  await page.screenshot({ path: path.join(args.out, "explore-latent-map.png") });
  before = await count(page, "decodes");
  await page.click("#sample-prior");
  await settled(page, "decodes", before);
  const zPrior = await decodedMatches("prior sample");
  check(zPrior.join() !== zMap.join(), "sampling from the prior moves z");

  // The 20-D model: 16 sliders, no map.
  before = await count(page, "decodes");
  await page.selectOption("#model", "1");
  await settled(page, "decodes", before);
  check((await page.locator("#sliders input").count()) === 16, "a 20-D latent shows its first 16 dimensions");
  check(!(await page.locator("#latent-map").isVisible()), "no latent map for a 20-D latent");
  check((await page.evaluate(() => window.playground.z.length)) === 20, "z keeps all 20 dimensions");
  before = await count(page, "decodes");
  await page.click("#sample-prior");
  await settled(page, "decodes", before);
  await decodedMatches("20-D prior sample");
  await page.screenshot({ path: path.join(args.out, "explore.png") });

  // A bad request from the page's side is an error line in the page, not a crash.
  await page.click("#tab-interpolate");
  expectedBadRequests = 1;
  await page.fill("#frames", "100");
  await page.dispatchEvent("#frames", "change");
  await page.waitForFunction(() => document.getElementById("status").classList.contains("error"));
  check((await page.locator("#status").textContent()).startsWith("interpolate: frames:"),
    "the server's 400 for frames out of range is reported on the page");
} finally {
  await browser.close();
  server.kill("SIGINT");
  await new Promise((resolve) => server.on("exit", resolve));
  rmSync(work, { recursive: true, force: true });
}

check(server.exitCode === 0, `Ctrl-C stopped the server cleanly (exit ${server.exitCode})`);
for (const error of pageErrors) console.log(`FAIL ${error}`);
failures += pageErrors.length;
console.log(failures ? `${failures} failed` : "all passed");
process.exit(failures ? 1 : 0);
