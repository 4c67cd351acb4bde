// Classifies a dropped image with a `medkd export --format onnx` model, exactly as medkd reads
// an image: RGB (or gray) pixels / 255 as float32, gray replicated to 3 channels or RGB turned
// to luminance for 1, NCHW; the graph normalizes and applies the temperature itself.
// An image of another size than the model's input is resized by the canvas (smooth scaling),
// which is not medkd's resize: `medkd predict --resize` can give slightly other numbers.
"use strict";

const state = { session: null, description: null };
const $ = (id) => document.getElementById(id);

async function loadModel() {
  ort.env.logLevel = "error"; // not the CPU-vendor warning WebAssembly always gives
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a static server rarely gives
  ort.env.wasm.wasmPaths = "./";
  state.description = await (await fetch("model.json")).json();
  state.session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  showCard(state.description);
  $("status").textContent = "ready: drop an image";
}

function showCard(d) {
  const [c, h, w] = d.input.shape;
  const rows = [
    ["architecture", `${d.arch}${d.small_input ? " (small-input stem)" : ""}`],
    ["classes", d.class_names.join(", ")],
    ["task", d.task],
    ["input", `${w}×${h} px, ${d.input.channels}, ${c} channel(s)`],
    ["normalization", `mean ${d.normalization.mean.map((v) => v.toFixed(4)).join(", ")}; std ${d.normalization.std.map((v) => v.toFixed(4)).join(", ")}`],
    ["temperature", d.temperature == null ? "none" : d.temperature.toFixed(4)],
    ["weights", d.weights],
    ["trained by", `medkd ${d.source.medkd.version} (${d.source.medkd.commit ?? "unknown commit"})`],
  ];
  $("card").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

function el(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

// The float32 input of one image, as medkd's to_planes and convert_channels compute it.
function toInput(imageData, channels) {
  const { data, width, height } = imageData;
  const plane = width * height;
  const out = new Float32Array(channels * plane);
  const f = Math.fround;
  const [wr, wg, wb] = [f(0.299), f(0.587), f(0.114)];
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = [f(data[4 * i] / 255), f(data[4 * i + 1] / 255), f(data[4 * i + 2] / 255)];
    if (channels === 3) {
      out[i] = r;
      out[plane + i] = g;
      out[2 * plane + i] = b;
    } else {
      out[i] = f(f(f(wr * r) + f(wg * g)) + f(wb * b));
    }
  }
  return out;
}

async function classify(blob) {
  const [channels, height, width] = state.description.input.shape;
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = $("preview");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  const resized = bitmap.width !== width || bitmap.height !== height;
  const input = new ort.Tensor("float32", toInput(context.getImageData(0, 0, width, height), channels), [1, channels, height, width]);
  const output = await state.session.run({ image: input });
  return { probabilities: Array.from(output.probabilities.data), resized };
}

function showResult({ probabilities, resized }) {
  const names = state.description.class_names;
  const order = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  $("result").replaceChildren(
    ...order.map(([p, i]) => {
      const row = document.createElement("tr");
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(100 * p).toFixed(1)}%`;
      const barCell = document.createElement("td");
      barCell.style.width = "50%";
      barCell.append(bar);
      const value = el("td", p.toFixed(4));
      value.className = "p";
      row.append(el("td", names[i]), value, barCell);
      return row;
    }),
  );
  $("status").textContent = resized ? "resized by the browser to the model's input size" : "classified at the model's input size";
}

async function onFile(file) {
  $("error").textContent = "";
  try {
    showResult(await classify(file));
  } catch (error) {
    $("error").textContent = `cannot classify ${file.name}: ${error}`;
  }
}

// ?check=LIST.json: classify each listed image file and put {file: probabilities} into #check,
// for tools/web/check_page.mjs.
async function runCheck(listUrl) {
  const files = await (await fetch(listUrl)).json();
  const results = {};
  for (const file of files) {
    const blob = await (await fetch(file)).blob();
    results[file] = (await classify(blob)).probabilities;
  }
  $("check").textContent = JSON.stringify(results);
  document.title = "check done";
}

function wireDrop() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (e) => e.target.files[0] && onFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
  });
}

(async () => {
  wireDrop();
  try {
    await loadModel();
    const check = new URLSearchParams(location.search).get("check");
    if (check) await runCheck(check);
  } catch (error) {
    $("error").textContent = `${error}`;
    document.title = "check failed";
  }
})();
