// The web page in headless Chromium (Debian's, driven by playwright-core): upload a CSV through
// the page, see its errors row by row, follow a good one to completion, check that every
// thumbnail rendered and the output CSV link works, and save a screenshot; retry a request's
// failed image and see it reused.
// Run as `node browser.test.mjs` (ctest does): exits 77 (skipped) when Chromium is missing,
// unless IMGPROC_REQUIRE_BROWSER=1, when that is a failure.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { exampleCsv, startImageServer, startImgproc } from './support.mjs';

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  if (process.env.IMGPROC_REQUIRE_BROWSER === '1') {
    console.error(`browser test: ${chromiumPath} is missing (apt-get install chromium; scripts/install-deps.sh does)`);
    process.exit(1);
  }
  console.log(`browser test skipped: ${chromiumPath} is missing`);
  process.exit(77);
}
const { chromium } = await import('playwright-core');

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = process.env.EXAMPLES_DIR || path.join(here, '../../examples/images');
const artifacts = process.env.ARTIFACTS_DIR || path.join(here, 'artifacts');

let images;
let server;
let context;
let profile;
let page;

before(async () => {
  images = await startImageServer(examples);
  server = await startImgproc();
  profile = mkdtempSync(path.join(os.tmpdir(), 'imgproc-chromium-'));
  // A persistent context is how playwright takes a fresh --user-data-dir of our own.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await server?.stop();
  await images?.close();
});

async function chooseCsv(name, text) {
  await page.setInputFiles('#csv-file', { name, mimeType: 'text/csv', buffer: Buffer.from(text) });
  await page.click('#submit');
}

test('a bad CSV shows its problems row by row', async () => {
  await page.goto(server.base + '/');
  assert.equal(await page.title(), 'imgproc');
  await chooseCsv('bad.csv', 'Serial Number,Product Name,Input Image Urls\nx,SKU,http://a/1.jpg\n1,,http://a/2.jpg\n');
  await page.waitForSelector('#csv-errors:not([hidden]) tbody tr', { timeout: 10_000 });
  assert.equal(await page.textContent('#upload-error'), 'Invalid CSV format');
  const rows = await page.$$eval('#csv-errors tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.ok(rows.length >= 2, JSON.stringify(rows));
  assert.deepEqual(rows[0].slice(0, 2), ['2', 'Serial Number']);
  assert.ok(rows.some((r) => r[0] === '3' && r[1] === 'Product Name'), JSON.stringify(rows));
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'web-csv-errors.png') });
});

test('a good CSV runs to completion with thumbnails, sizes and the output CSV', async () => {
  await page.goto(server.base + '/');
  await chooseCsv('products.csv', exampleCsv(images));
  await page.waitForSelector('#request-section:not([hidden])', { timeout: 10_000 });
  await page.waitForFunction(() => document.querySelector('#request-status')?.textContent === 'completed',
    null, { timeout: 60_000 });
  const id = await page.textContent('#request-id');
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(await page.getAttribute('#progress-bar', 'aria-valuenow'), '100');
  assert.match(await page.textContent('#progress-text'), /5 of 5 images finished \(4 compressed, 1 failed\)/);
  // Finished with a failed image: Retry is offered, Cancel is not.
  await page.waitForSelector('#retry:not([hidden])', { timeout: 10_000 });
  assert.ok(await page.isHidden('#cancel'));

  // Four compressed images: a before and an after thumbnail each, all decoded by the browser;
  // the missing image's "before" (a 404) became a placeholder.
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#products img')];
    return imgs.length === 8 && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, null, { timeout: 20_000 }).catch(async (e) => {
    const state = await page.$$eval('#products img', (imgs) => imgs.map((i) => [i.src, i.complete, i.naturalWidth]));
    throw new Error(`${e.message}: ${JSON.stringify(state)}`);
  });
  const widths = await page.$$eval('#products img.after', (imgs) => imgs.map((i) => i.naturalWidth));
  assert.equal(widths.length, 4);
  assert.ok(widths.every((w) => w > 0), JSON.stringify(widths));
  const captions = await page.$$eval('#products figcaption', (cs) => cs.map((c) => c.textContent));
  assert.equal(captions.filter((c) => /KB → .*−\d+%/.test(c)).length, 4, JSON.stringify(captions));
  assert.ok(captions.some((c) => /HTTP 404/.test(c)), JSON.stringify(captions));
  assert.ok(captions.some((c) => /passed through/.test(c)), JSON.stringify(captions));
  assert.match(await page.textContent('#totals'), /^Total: .* → .* \(−\d+%\)$/);

  // The output CSV link works (fetched from the page's own origin).
  const href = await page.getAttribute('#csv-link', 'href');
  assert.equal(href, `/api/p/requests/${id}/output.csv`);
  const csv = await page.evaluate(async (url) => {
    const res = await fetch(url);
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  }, href);
  assert.equal(csv.status, 200);
  assert.equal(csv.type, 'text/csv; charset=utf-8');
  assert.match(csv.text, /^Serial Number,Product Name,Input Image Urls,Output Image Urls\r\n1,SKU1,/);
  // The image cache (on by default) stores content-addressed objects.
  assert.match(csv.text, /^1,SKU1,.*"http:\/\/127\.0\.0\.1:\d+\/media\/objects\/[0-9a-f]{64}_jpeg-q50\.jpg,/m);
  const download = await Promise.all([page.waitForEvent('download'), page.click('#csv-errors-link')]);
  assert.equal(download[0].suggestedFilename(), `output-${id}.csv`);

  // The recent requests list shows it (after the page reloaded the list on completion).
  await page.waitForSelector(`#recent tr[data-id="${id}"]`, { timeout: 10_000 });

  mkdirSync(artifacts, { recursive: true });
  const shot = path.join(artifacts, 'web.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(existsSync(shot));
  console.log(`screenshot: ${shot}`);
});

test('Refresh is sent with the upload; Retry redoes the failed image of a finished request', async () => {
  await page.goto(server.base + '/');
  await page.check('#refresh-cache');
  const csv = `Serial Number,Product Name,Input Image Urls\n1,SKU1,"${images.url('img1.jpg')},${images.url('late.jpg')}"\n`;
  await chooseCsv('late.csv', csv);
  await page.waitForFunction(() => document.querySelector('#request-status')?.textContent === 'completed',
    null, { timeout: 60_000 });
  // The upload sent refresh=true: img1.jpg was compressed anew, although the request before stored
  // its output (without it, its host's 304 would have reused that: "0 compressed, 1 reused").
  assert.equal(await page.textContent('#progress-text'), '2 of 2 images finished (1 compressed, 1 failed)');
  await page.waitForSelector('#retry:not([hidden])');

  // The host has the image now, with img1.jpg's bytes: the retry reuses that output.
  images.add('late.jpg', images.file('img1.jpg'));
  const [retry] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/retry')), page.click('#retry')]);
  assert.equal(retry.status(), 200);
  assert.equal((await retry.json()).status, 'processing');
  await page.waitForFunction(() => document.querySelector('#request-status')?.textContent === 'completed' &&
    /0 failed\)$/.test(document.querySelector('#progress-text')?.textContent), null, { timeout: 60_000 });
  assert.equal(await page.textContent('#progress-text'), '2 of 2 images finished (1 compressed, 1 reused, 0 failed)');
  assert.ok(await page.isHidden('#retry'));
  const badges = await page.$$eval('#products figure', (fs) => fs.map((f) => !!f.querySelector('figcaption .reused')));
  assert.deepEqual(badges, [false, true]);
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#products img.after')];
    return imgs.length === 2 && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, null, { timeout: 20_000 });
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'web-retried.png'), fullPage: true });
});

test('with API keys on, the page asks for a key and uses it for everything', async () => {
  const keyed = await startImgproc({ API_KEYS: 'key-one' });
  try {
    await page.goto(keyed.base + '/');
    await page.evaluate(() => localStorage.removeItem('imgproc.apiKey'));
    await page.reload();
    await page.waitForSelector('#recent-empty:not([hidden])');
    assert.match(await page.textContent('#recent-empty'), /API key/);
    // Without a key the upload is refused, with the server's message.
    await chooseCsv('products.csv', exampleCsv(images));
    await page.waitForSelector('#upload-error:not([hidden])');
    assert.match(await page.textContent('#upload-error'), /Unauthorized/);

    await page.click('#key-box summary');
    await page.fill('#api-key', 'key-one');
    await page.press('#api-key', 'Tab');  // change event: the key is kept
    await page.click('#submit');
    await page.waitForFunction(() => document.querySelector('#request-status')?.textContent === 'completed',
      null, { timeout: 60_000 });
    // Media need the key: the page fetched them as blobs, and they decoded.
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll('#products img.after')];
      return imgs.length === 4 && imgs.every((img) => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0);
    }, null, { timeout: 20_000 });
    const id = await page.textContent('#request-id');
    await page.waitForSelector(`#recent tr[data-id="${id}"]`, { timeout: 10_000 });
    const download = await Promise.all([page.waitForEvent('download'), page.click('#csv-link')]);
    assert.equal(download[0].suggestedFilename(), `output-${id}.csv`);
  } finally {
    await page.evaluate(() => localStorage.removeItem('imgproc.apiKey')).catch(() => {});
    await keyed.stop();
  }
});
