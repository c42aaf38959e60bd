// The web page in headless Chromium (Debian's, driven by playwright-core): upload a CSV through
// the page, see its errors row by row, follow a good one to completion, check that every
// thumbnail rendered and the output CSV link works, and save a screenshot; retry a request's
// failed image and see it reused; pick a preset and see each image's variant, and a bad output
// field's error next to it; page through a request of 10,000 products (timed).
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
  const originalsLoaded = [];
  const onRequest = (r) => { if (r.url().startsWith(images.url(''))) originalsLoaded.push(r.url()); };
  page.on('request', onRequest);
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

  // Four compressed images, from our own media, all decoded by the browser; the originals stay on
  // their host until asked for.
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#products img')];
    return imgs.length === 4 && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, null, { timeout: 20_000 }).catch(async (e) => {
    const state = await page.$$eval('#products img', (imgs) => imgs.map((i) => [i.src, i.complete, i.naturalWidth]));
    throw new Error(`${e.message}: ${JSON.stringify(state)}`);
  });
  const afters = await page.$$eval('#products img.after', (imgs) => imgs.map((i) => [i.naturalWidth, i.src, i.loading]));
  assert.equal(afters.length, 4);
  assert.ok(afters.every(([w, src, loading]) => w > 0 && src.startsWith(`${server.base}/media/`) && loading === 'lazy'),
    JSON.stringify(afters));
  assert.equal(originalsLoaded.length, 0, JSON.stringify(originalsLoaded));
  // On demand, the originals load in place: four decode, the missing one (a 404) becomes a placeholder.
  for (const button of await page.$$('#products button.original')) await button.click();
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#products img.before')];
    return imgs.length === 4 && imgs.every((img) => img.complete && img.naturalWidth > 0) &&
      document.querySelectorAll('#products button.original').length === 0 &&
      [...document.querySelectorAll('#products .placeholder')].some((p) => p.textContent === 'cannot load');
  }, null, { timeout: 20_000 });
  assert.equal(originalsLoaded.length, 5, JSON.stringify(originalsLoaded));
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
  page.off('request', onRequest);
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

// The fields of the forms the page has sent, in order: [name, value] (a file's value is its
// name). Chromium does not give playwright a body with a file in it, so the page's fetch is
// watched from inside (a pass-through wrapper, installed before the page's script runs).
async function watchForms() {
  await page.addInitScript(() => {
    if (window.imgprocForms) return;
    window.imgprocForms = [];
    const original = window.fetch;
    window.fetch = function (url, options) {
      if (options && options.body instanceof FormData) {
        window.imgprocForms.push([...options.body.entries()].map(([k, v]) => [k, typeof v === 'string' ? v : v.name]));
      }
      return original.apply(this, arguments);
    };
  });
}
const lastForm = () => page.evaluate(() => window.imgprocForms.at(-1));
const isUpload = (r) => r.url() === `${server.base}/api/p/upload/` && r.request().method() === 'POST';

test('the preset picker lists the presets from the API; a bad quality is shown next to its field', async () => {
  const presets = await (await fetch(`${server.base}/api/p/presets`)).json();
  assert.deepEqual(Object.keys(presets.presets).sort(), ['large', 'thumb']);
  await watchForms();
  await page.goto(server.base + '/');
  await page.waitForFunction((n) => document.querySelectorAll('#presets input[name=preset]').length === n,
    Object.keys(presets.presets).length, { timeout: 10_000 });
  const listed = await page.$$eval('#presets label', (ls) => ls.map((l) => [l.querySelector('input').value,
    l.querySelector('input').checked, l.textContent.trim()]));
  assert.deepEqual(listed, [['large', false, 'large — JPEG q80 progressive, fit 1600×1600'],
    ['thumb', false, 'thumb — WebP q70, fit 400×400']]);
  // The Output section is collapsed until opened; WebP and AVIF have no progressive.
  assert.equal(await page.$eval('#output-box', (d) => d.open), false);
  assert.ok(await page.isHidden('#quality'));
  await page.click('#output-box summary');
  await page.selectOption('#format', 'webp');
  assert.ok(await page.isDisabled('#progressive'));
  assert.equal(await page.textContent('#output-summary'), '(WebP q70, full size)');
  assert.equal(await page.getAttribute('#quality', 'placeholder'), '70');
  await page.selectOption('#format', '');

  // Only the field set is sent; the server's words about it appear next to it.
  await page.fill('#quality', '150');
  const [answer] = await Promise.all([page.waitForResponse(isUpload, { timeout: 10_000 }),
    chooseCsv('products.csv', exampleCsv(images))]);
  assert.equal(answer.status(), 400);
  assert.deepEqual(await lastForm(), [['csv_file', 'products.csv'], ['quality', '150']]);
  const refusal = await answer.json();
  assert.deepEqual(refusal, { error: 'Invalid quality', field: 'quality',
    details: 'quality must be a whole number from 1 to 100' });
  await page.waitForSelector('#quality-error:not([hidden])', { timeout: 10_000 });
  assert.equal(await page.textContent('#quality-error'), refusal.details);
  assert.ok(await page.$eval('#quality-error', (e) => e.closest('label') === document.getElementById('quality').closest('label')));
  assert.equal(await page.getAttribute('#quality', 'aria-invalid'), 'true');
  assert.equal(await page.textContent('#upload-error'), 'Invalid quality');
  assert.ok(await page.isHidden('#csv-errors'));
  assert.ok(await page.isHidden('#request-section'));
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, 'web-bad-quality.png'), fullPage: true });
  // Changing the field clears its error.
  await page.fill('#quality', '60');
  assert.ok(await page.isHidden('#quality-error'));
  assert.equal(await page.getAttribute('#quality', 'aria-invalid'), null);
});

test('with the thumb preset checked, every compressed image gets a WebP variant, shown per product', async () => {
  await watchForms();
  await page.goto(server.base + '/');
  await page.waitForSelector('#presets input[value=thumb]', { timeout: 10_000 });
  await page.check('#presets input[value=thumb]');
  const [answer] = await Promise.all([page.waitForResponse(isUpload, { timeout: 10_000 }),
    chooseCsv('products.csv', exampleCsv(images))]);
  assert.equal(answer.status(), 202, await answer.text());
  assert.deepEqual(await lastForm(), [['csv_file', 'products.csv'], ['presets', 'thumb']]);
  const id = (await answer.json()).request_id;
  await page.waitForFunction((id) => document.querySelector('#request-id')?.textContent === id &&
    document.querySelector('#request-status')?.textContent === 'completed', id, { timeout: 60_000 });

  // The server has the request's outputs: the seed's main output and the thumb.
  const status = await (await fetch(`${server.base}/status/${id}/`)).json();
  assert.deepEqual(status.outputs, {
    main: { format: 'jpeg', quality: 50, max_width: 0, max_height: 0, progressive: false },
    variants: { thumb: { format: 'webp', quality: 70, max_width: 400, max_height: 400, progressive: false } },
  });
  assert.ok(await page.isVisible('#outputs'));
  assert.deepEqual(await page.$$eval('#outputs li', (lis) => lis.map((li) => li.textContent)),
    ['main — JPEG q50, full size (Output Image Urls)', 'thumb — WebP q70, fit 400×400 (variant)']);

  // Each compressed image's thumb, as the status gives it, under its figure: a link, WxH and size.
  const kb = (n) => (n < 1024 ? n + ' B' : (n / 1024).toFixed(1) + ' KB');
  const expected = [];
  for (const p of status.products) {
    const list = p.Variants.thumb.split(',');
    assert.equal(list.length, p['Input Image Urls'].split(',').length, JSON.stringify(p));
    for (const z of p['Image Sizes']) {
      const v = z.variants.thumb;
      assert.equal(list[z.index], v.url);
      assert.ok(Math.max(v.width, v.height) === 400 && Math.min(v.width, v.height) <= 400, JSON.stringify(v));
      expected.push([p['Serial Number'], z.index, v.url, `thumb ${v.width}×${v.height} · ${kb(v.output_bytes)}`]);
    }
  }
  assert.equal(expected.length, 4, JSON.stringify(status.products));
  await page.waitForFunction((n) => document.querySelectorAll('#products a.variant').length === n,
    expected.length, { timeout: 10_000 });
  const shown = await page.$$eval('#products tbody tr', (trs) => trs.flatMap((tr) =>
    [...tr.querySelectorAll('figure')].flatMap((f) => [...f.querySelectorAll('a.variant')].map((a) =>
      [Number(tr.dataset.serial), Number(f.dataset.index), a.href, a.closest('li').textContent]))));
  assert.deepEqual(shown, expected);
  // The link serves the WebP, from our media.
  const thumb = await fetch(expected[0][2]);
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers.get('content-type'), 'image/webp');
  const webp = Buffer.from(await thumb.arrayBuffer());
  assert.equal(webp.subarray(0, 4).toString('latin1') + webp.subarray(8, 12).toString('latin1'), 'RIFFWEBP');
  assert.equal(webp.length, status.products[0]['Image Sizes'][0].variants.thumb.output_bytes);

  // The main thumbnails decode as before; then the screenshot of a request with variants.
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('#products img.after')];
    return imgs.length === 4 && imgs.every((img) => img.complete && img.naturalWidth > 0);
  }, null, { timeout: 20_000 });
  mkdirSync(artifacts, { recursive: true });
  const top = await page.$eval('#request-section', (section) => section.getBoundingClientRect().top + scrollY);
  const height = await page.$eval('#request-section', (section) => section.getBoundingClientRect().height);
  await page.screenshot({ path: path.join(artifacts, 'web-presets.png'), fullPage: true,
    clip: { x: 0, y: Math.max(0, top - 16), width: 1200, height: Math.ceil(height) + 32 } });
  console.log(`screenshot: ${path.join(artifacts, 'web-presets.png')}`);
});

// A whole catalogue: 10,000 products of 5 images each, naming only a handful of image URLs (each
// downloaded once, every other slot reusing it), 10 of them a 404. The page shows 100 products at a
// time, read through the paged status API, with lazy thumbnails from our own media and never an
// original from the image host unless asked; a summary gives the counts, the bytes saved and the
// failed images.
test('a request of 10,000 products x 5 images stays fast: pages, lazy thumbnails, a summary', async () => {
  const rowsTotal = 10_000;
  images.add('img5.jpg', images.file('img1.jpg'));
  const urls = ['img1.jpg', 'img2.jpg', 'img3.png', 'img4.webp', 'img5.jpg'].map((n) => images.url(n));
  const lines = ['Serial Number,Product Name,Input Image Urls'];
  for (let i = 1; i <= rowsTotal; i++) {
    const list = i % 1000 === 0 ? [...urls.slice(0, 4), images.url('missing.jpg')] : urls;
    lines.push(`${i},SKU${i},"${list.join(',')}"`);
  }
  const form = new FormData();
  form.append('csv_file', new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }), 'big.csv');
  const uploaded = await fetch(`${server.base}/api/p/upload/`, { method: 'POST', body: form });
  assert.equal(uploaded.status, 202, await uploaded.clone().text());
  const id = (await uploaded.json()).request_id;

  // A page of its own, which notes when the first product row is drawn and when each image loaded
  // (in the page's time, from the start of its navigation).
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.addInitScript(() => {
    window.imgprocTiming = { firstRow: null };
    new MutationObserver((_, observer) => {
      if (!document.querySelector('#products tbody tr')) return;
      observer.disconnect();
      requestAnimationFrame(() => { window.imgprocTiming.firstRow = performance.now(); });
    }).observe(document, { subtree: true, childList: true });
    document.addEventListener('load', (e) => {
      if (e.target.tagName === 'IMG') e.target.dataset.loadedAt = String(performance.now());
    }, true);
  });
  // Everything the page asks for: nothing from the image host, and never the whole status.
  const imageOrigin = images.url('');
  const fromImageHost = [];
  const statusReads = [];
  const onRequest = (r) => {
    if (r.url().startsWith(imageOrigin)) fromImageHost.push(r.url());
    if (r.url().startsWith(`${server.base}/status/`)) statusReads.push(r.url());
  };
  page.on('request', onRequest);
  try {
    // Followed live until it completes.
    await page.goto(`${server.base}/#/requests/${id}`);
    await page.waitForFunction(() => document.querySelector('#request-status')?.textContent === 'completed',
      null, { timeout: 120_000 });

    // Opened afresh, finished: the first page of products, then its thumbnails as it scrolls.
    await page.goto('about:blank');
    await page.goto(`${server.base}/#/requests/${id}`);
    const firstRender = await (await page.waitForFunction(() => window.imgprocTiming.firstRow,
      null, { timeout: 30_000 })).jsonValue();
    assert.equal(await page.textContent('#request-status'), 'completed');
    // Scroll like a reader until the 100th thumbnail is on screen (the thumbnails are lazy), then
    // wait for all of the first 100. (Here they name 5 images only, so once those are decoded the
    // browser shows the rest from its memory, lazy or not: a real catalogue's are all different.)
    await page.evaluate(async () => {
      const target = document.querySelectorAll('#products img.after')[99];
      while (target.getBoundingClientRect().bottom > innerHeight &&
             innerHeight + scrollY < document.documentElement.scrollHeight) {
        scrollBy(0, 400);
        await new Promise((resolve) => requestAnimationFrame(resolve));
      }
    });
    const hundred = await (await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll('#products img.after')].slice(0, 100);
      return imgs.length === 100 && imgs.every((img) => img.complete && img.naturalWidth > 0 && img.dataset.loadedAt) &&
        Math.max(...imgs.map((img) => Number(img.dataset.loadedAt)));
    }, null, { timeout: 30_000 })).jsonValue();
    console.log(`big request (${rowsTotal} rows x 5 images): first render of the request view ${Math.round(firstRender)} ms after navigation`);
    console.log(`big request (${rowsTotal} rows x 5 images): first 100 thumbnails loaded ${Math.round(hundred)} ms after navigation`);

    // At most a page of products in the DOM, serials 1 to 100; every thumbnail lazy, from our media.
    const serials = () => page.$$eval('#products tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.serial)));
    const range = (from, n) => Array.from({ length: n }, (_, i) => from + i);
    assert.deepEqual(await serials(), range(1, 100));
    const thumbs = await page.$$eval('#products img', (imgs) => imgs.map((i) => [i.className, i.getAttribute('loading'), i.src]));
    assert.equal(thumbs.length, 500);
    const ownMedia = thumbs.filter(([cls, loading, src]) => cls === 'after' && loading === 'lazy' &&
      src.startsWith(`${server.base}/media/`));
    assert.equal(ownMedia.length, thumbs.length, JSON.stringify(thumbs.slice(0, 3)));
    assert.equal(await page.textContent('#pager-top .info'), 'products 1–100 of 10,000');

    // The summary: the counts of the request, as the API gives them.
    const counts = await (await fetch(`${server.base}/status/${id}/?limit=0`)).json();
    assert.equal(counts.products.length, 0);
    assert.deepEqual([counts.page.total, counts.progress.images_total, counts.progress.images_done,
      counts.progress.images_failed], [rowsTotal, 50_000, 49_990, 10]);
    const shown = await page.$$eval('#summary dd', (dds) => Object.fromEntries(dds.map((d) => [d.id, d.textContent])));
    assert.deepEqual(shown, {
      'sum-products': '10,000', 'sum-images': '50,000', 'sum-done': '49,990',
      'sum-reused': counts.progress.images_reused.toLocaleString('en-US'), 'sum-failed': '10', 'sum-waiting': '0',
      'sum-saved': shown['sum-saved'],
    });
    assert.ok(counts.progress.images_reused >= 49_980, JSON.stringify(counts.progress));
    // Once every product has been read, the bytes are summed over all of them, and the 10 failed
    // images listed.
    await page.waitForFunction(() => /over all 10,000 products\.$/.test(document.querySelector('#totals-note').textContent),
      null, { timeout: 60_000 });
    let before = 0;
    let after = 0;
    for (let offset = 0; offset < rowsTotal; offset += 1000) {
      const slice = await (await fetch(`${server.base}/status/${id}/?offset=${offset}&limit=1000`)).json();
      for (const p of slice.products) for (const z of p['Image Sizes']) { before += z.input_bytes; after += z.output_bytes; }
    }
    const size = (n) => (n < 1024 * 1024 * 1024 ? (n / 1024 / 1024).toFixed(2) + ' MB' : (n / 1024 ** 3).toFixed(2) + ' GB');
    assert.equal(await page.textContent('#sum-saved'), size(before - after));
    assert.equal(await page.textContent('#totals'), `Total: ${size(before)} → ${size(after)} (−${Math.round((1 - after / before) * 100)}%)`);
    assert.equal(await page.textContent('#failed-count'), '10');
    assert.deepEqual(await page.$$eval('#failed tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.serial))),
      range(1, 10).map((i) => i * 1000));
    mkdirSync(artifacts, { recursive: true });
    // The request as one sees it: its summary, failed images and first products.
    const top = await page.$eval('#request-section', (section) => section.getBoundingClientRect().top + scrollY);
    await page.screenshot({ path: path.join(artifacts, 'big-request.png'), fullPage: true,
      clip: { x: 0, y: top - 16, width: 1200, height: 1500 } });
    console.log(`screenshot: ${path.join(artifacts, 'big-request.png')}`);

    // The next page: products 101 to 200.
    await page.click('#pager-top .next');
    await page.waitForFunction(() => document.querySelector('#products tbody tr')?.dataset.serial === '101',
      null, { timeout: 10_000 });
    assert.deepEqual(await serials(), range(101, 100));
    assert.equal(await page.textContent('#pager-top .info'), 'products 101–200 of 10,000');
    assert.match(page.url(), /\/page\/2$/);
    // The failed-image filter, and a failed image's product shown on its page.
    await page.fill('#failed-filter', 'sku2000');
    await page.waitForFunction(() => document.querySelectorAll('#failed tbody tr').length === 1, null, { timeout: 10_000 });
    assert.match(await page.textContent('#failed tbody tr'), /SKU2000.*missing\.jpg.*HTTP 404/);
    await page.click('#failed tbody tr button');
    await page.waitForSelector('#products tr.highlight[data-serial="2000"]', { timeout: 10_000 });
    assert.deepEqual(await serials(), range(1901, 100));
    await page.click('#pager-bottom .prev');
    await page.waitForFunction(() => document.querySelector('#products tbody tr')?.dataset.serial === '1801',
      null, { timeout: 10_000 });

    // A page past the end (an old link) shows the last one.
    await page.goto(`${server.base}/#/requests/${id}/page/500`);
    await page.waitForFunction(() => document.querySelector('#products tbody tr')?.dataset.serial === '9901',
      null, { timeout: 10_000 });
    assert.equal(await page.textContent('#pager-bottom .info'), 'products 9,901–10,000 of 10,000');
    assert.match(page.url(), /\/page\/100$/);

    assert.deepEqual(fromImageHost, []);
    assert.ok(statusReads.length > 0);
    const whole = statusReads.filter((u) => !/[?&]limit=\d+/.test(u));
    assert.deepEqual(whole, [], 'the page read the whole status');
    assert.ok((await serials()).length <= 100);
  } finally {
    await page.close();
  }
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
