// Opens a built page (tools/web/build_page.sh) in headless Chromium through puppeteer-core,
// classifies the listed images in the page's check mode and compares the probabilities with
// medkd predict's CSV on the same files; then drops one image through the file input and takes
// a screenshot. Served from 127.0.0.1 by this script: nothing is fetched from elsewhere.
//
//   node check_page.js PAGE_DIR LIST_JSON EXPECTED_CSV SCREENSHOT
//
// Exit status 0 when every image's probabilities are within 1e-5 of medkd's.
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");
const puppeteer = require("puppeteer-core");

const [pageDir, list, expectedCsv, screenshot] = process.argv.slice(2);
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".png": "image/png" };

function serve(root) {
  const server = http.createServer((request, response) => {
    const file = path.join(root, decodeURIComponent(new URL(request.url, "http://x").pathname));
    if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function readExpected(csvPath) {
  const [header, ...rows] = fs.readFileSync(csvPath, "utf8").trim().split("\n");
  const expected = {};
  for (const row of rows) {
    // medkd names a file by its stem; these check files have no comma in their names.
    const [id, ...values] = row.split(",");
    expected[id] = values.map(Number);
  }
  return { classes: header.split(",").slice(1), expected };
}

(async () => {
  const root = path.resolve(pageDir);
  const server = await serve(root);
  const url = `http://127.0.0.1:${server.address().port}/index.html`;
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  const errors = [];
  const page = await browser.newPage();
  page.on("pageerror", (error) => errors.push(`${error}`));
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  page.on("response", (response) => response.status() >= 400 && errors.push(`${response.status()} ${response.url()}`));
  page.on("request", (request) => {
    if (!request.url().startsWith(`http://127.0.0.1:${server.address().port}/`) && !request.url().startsWith("data:") && !request.url().startsWith("blob:")) {
      errors.push(`fetched from outside the page: ${request.url()}`);
    }
  });
  await page.setViewport({ width: 820, height: 900 });
  await page.goto(`${url}?check=${encodeURIComponent(list)}`);
  await page.waitForFunction(() => document.title.startsWith("check"), { timeout: 300000 });
  const title = await page.title();
  const results = title === "check done" ? JSON.parse(await page.$eval("#check", (e) => e.textContent)) : {};
  const { expected } = readExpected(expectedCsv);
  let worst = 0;
  let sameArgmax = 0;
  const argmax = (v) => v.indexOf(Math.max(...v));
  for (const [file, probabilities] of Object.entries(results)) {
    const id = path.basename(file, path.extname(file));
    const want = expected[id];
    if (!want) throw new Error(`${id} is not in ${expectedCsv}`);
    probabilities.forEach((p, i) => (worst = Math.max(worst, Math.abs(p - want[i]))));
    sameArgmax += argmax(probabilities) === argmax(want) ? 1 : 0;
  }
  const count = Object.keys(results).length;

  // A user's view: one image through the file input, then the screenshot.
  const first = JSON.parse(fs.readFileSync(path.join(root, list), "utf8"))[0];
  const input = await page.$("#file");
  await input.uploadFile(path.join(root, first));
  await page.waitForFunction(() => document.querySelectorAll("#result tr").length > 0, { timeout: 60000 });
  await page.screenshot({ path: screenshot, fullPage: true });
  await browser.close();
  server.close();

  const ok = count > 0 && count === Object.keys(expected).length && worst <= 1e-5 && sameArgmax === count && errors.length === 0;
  const summary = { images: count, max_abs_diff: worst, same_argmax: sameArgmax, errors, passed: ok };
  console.log(JSON.stringify(summary));
  process.exit(ok ? 0 : 1);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
