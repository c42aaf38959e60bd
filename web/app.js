// imgproc's web page: upload a CSV, follow its progress, see before/after thumbnails and sizes.
// Plain JavaScript, no build step, no third-party code; every request goes to this server only
// (an original image, on its supplier's host, is loaded only when someone clicks for it).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  // Products shown at once (one page), products read per request when summing up a whole
  // request, and failed images listed at once: the page stays small whatever the request's size.
  const PAGE_SIZE = 100;
  const SCAN_SIZE = 500;
  const FAILED_SHOWN = 100;
  const state = {
    file: null, requestId: null, offset: 0, total: null, last: null, timer: null, seq: 0,
    rows: new Map(), objectUrls: [], summary: null, scan: null, highlight: null, presets: null,
  };

  // --- API -----------------------------------------------------------------------------------
  const apiKey = () => localStorage.getItem('imgproc.apiKey') || '';
  const authHeaders = () => (apiKey() ? { Authorization: 'Bearer ' + apiKey() } : {});

  async function api(path, options = {}) {
    const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    return { status: res.status, body };
  }
  // One slice of a request's products with its counts (limit 0: the counts only).
  const statusPath = (id, offset, limit) =>
    '/status/' + encodeURIComponent(id) + '/?offset=' + offset + '&limit=' + limit;

  // --- Formatting ----------------------------------------------------------------------------
  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(2) + ' MB';
    return (n / 1024 / 1024 / 1024).toFixed(2) + ' GB';
  }
  const count = (n) => n.toLocaleString('en-US');
  const saving = (before, after) => (before > 0 ? Math.round((1 - after / before) * 100) : 0);
  const isHttp = (url) => /^https?:\/\//i.test(url);
  const isFinished = (status) => status === 'completed' || status === 'cancelled';
  // Output settings in a few words, e.g. "WebP q70, fit 400×400", "JPEG q80 progressive, fit 1600×1600".
  const FORMATS = { jpeg: 'JPEG', webp: 'WebP', avif: 'AVIF' };
  const DEFAULT_QUALITY = { jpeg: 50, webp: 70, avif: 50 };
  function describeSettings(s) {
    const w = s.max_width || 0;
    const h = s.max_height || 0;
    const bounds = w && h ? 'fit ' + w + '×' + h : w ? 'width ≤ ' + w : h ? 'height ≤ ' + h : 'full size';
    return (FORMATS[s.format] || String(s.format).toUpperCase()) + ' q' + s.quality +
      (s.progressive ? ' progressive' : '') + ', ' + bounds;
  }
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'class') node.className = v; else if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // Media need the API key when keys are on; an <img> cannot send it, so fetch it as a blob, once
  // the thumbnail comes near the screen (as loading="lazy" does for the others).
  function fetchWithKey(img, url) {
    fetch(url, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(r.status)))
      .then((b) => { const u = URL.createObjectURL(b); state.objectUrls.push(u); img.src = u; })
      .catch(() => { img.alt = 'not available'; });
  }
  const nearScreen = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      nearScreen.unobserve(e.target);
      fetchWithKey(e.target, e.target.dataset.src);
    }
  }, { rootMargin: '800px 0px' }) : null;
  function setImage(img, url) {
    const sameOrigin = url.startsWith(location.origin + '/') || url.startsWith('/');
    if (!apiKey() || !sameOrigin) { img.src = url; return; }
    if (!nearScreen) { fetchWithKey(img, url); return; }
    img.dataset.src = url;
    nearScreen.observe(img);
  }
  // Before the products on view are replaced: their blobs and their observation go.
  function dropObjectUrls() {
    if (nearScreen) nearScreen.disconnect();
    for (const u of state.objectUrls) URL.revokeObjectURL(u);
    state.objectUrls = [];
  }

  // --- Upload --------------------------------------------------------------------------------
  function pickFile(file) {
    state.file = file || null;
    $('drop-text').textContent = file ? file.name + ' (' + bytes(file.size) + ')' : 'Drop a CSV here, or pick a file';
    $('submit').disabled = !file;
  }

  // The presets this service offers, one checkbox each (the ones checked stay checked when the
  // list is read again, e.g. after the API key changed).
  async function loadPresets() {
    const box = $('presets');
    const checked = new Set(checkedPresets());
    let answer;
    try { answer = await api('/api/p/presets'); } catch (e) { answer = { status: 0 }; }
    const presets = answer.status === 200 && answer.body && answer.body.presets ? answer.body.presets : null;
    state.presets = presets;
    box.replaceChildren();
    const note = $('presets-note');
    if (!presets) {
      note.hidden = false;
      note.textContent = answer.status === 401 ? 'Enter your API key to see the presets.' :
        'Cannot read the presets (' + ((answer.body && answer.body.error) || 'HTTP ' + answer.status) + ').';
      return;
    }
    const names = Object.keys(presets);
    note.hidden = names.length > 0;
    note.textContent = names.length ? '' : 'This service has no presets.';
    for (const name of names) {
      const input = el('input', { type: 'checkbox', name: 'preset', value: name });
      input.checked = checked.has(name);
      input.addEventListener('change', () => clearFieldError('presets'));
      box.append(el('label', { class: 'check preset', 'data-preset': name }, input,
        el('span', {}, el('b', { text: name }), ' — ' + describeSettings(presets[name]))));
    }
  }
  const checkedPresets = () =>
    [...document.querySelectorAll('#presets input[name=preset]:checked')].map((i) => i.value);

  // The output fields of the form, by their API names; only those the user set.
  const OUTPUT_INPUTS = { format: 'format', quality: 'quality', max_width: 'max-width', max_height: 'max-height',
    progressive: 'progressive' };
  function outputFields() {
    const fields = {};
    for (const [field, id] of Object.entries(OUTPUT_INPUTS)) {
      const input = $(id);
      if (input.type === 'checkbox') { if (input.checked && !input.disabled) fields[field] = 'true'; continue; }
      const value = input.value.trim();
      if (value) fields[field] = value;
    }
    const presets = checkedPresets();
    if (presets.length) fields.presets = presets.join(',');
    return fields;
  }
  // What the main output will be, in the Output section's summary line.
  function renderOutputChoice() {
    const format = $('format').value || 'jpeg';
    const jpeg = format === 'jpeg';
    $('progressive').disabled = !jpeg;
    if (!jpeg) $('progressive').checked = false;
    $('quality').placeholder = String(DEFAULT_QUALITY[format]);
    const quality = Number($('quality').value);
    $('output-summary').textContent = '(' + describeSettings({
      format,
      quality: Number.isInteger(quality) && quality >= 1 && quality <= 100 ? quality : DEFAULT_QUALITY[format],
      max_width: Number($('max-width').value) || 0, max_height: Number($('max-height').value) || 0,
      progressive: jpeg && $('progressive').checked,
    }) + ')';
  }

  // The server's word on one field (a 400 names it), next to that field.
  function fieldInput(field) { return field === 'presets' ? null : $(OUTPUT_INPUTS[field] || field); }
  function showFieldError(field, message) {
    const note = $(field + '-error');
    if (!note) return false;
    note.textContent = message;
    note.hidden = false;
    const input = fieldInput(field);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', note.id);
      if ($('output-box').contains(input)) $('output-box').open = true;
      input.focus();
    }
    return true;
  }
  function clearFieldError(field) {
    const note = $(field + '-error');
    if (note) { note.hidden = true; note.textContent = ''; }
    const input = fieldInput(field);
    if (input) { input.removeAttribute('aria-invalid'); input.removeAttribute('aria-describedby'); }
  }
  const clearFieldErrors = () => { for (const f of [...Object.keys(OUTPUT_INPUTS), 'presets']) clearFieldError(f); };

  // The upload's error; `details` is a CSV's problems (rows of a table) or a sentence.
  function showUploadError(message, details) {
    if (typeof details === 'string' && details) message += ': ' + details;
    $('upload-error').hidden = !message;
    $('upload-error').textContent = message || '';
    const table = $('csv-errors');
    const body = table.tBodies[0];
    body.replaceChildren();
    const rows = Array.isArray(details) ? details : [];
    for (const d of rows) {
      body.append(el('tr', {}, el('td', { text: String(d.row) }), el('td', { text: d.column || '(row)' }),
        el('td', { text: d.message })));
    }
    table.hidden = rows.length === 0;
  }

  async function upload(event) {
    event.preventDefault();
    if (!state.file) return;
    const form = new FormData();
    form.append('csv_file', state.file, state.file.name);
    const hook = $('webhook-url').value.trim();
    if (hook) form.append('webhook_url', hook);
    if ($('refresh-cache').checked) form.append('refresh', 'true');
    showUploadError('', []);
    clearFieldErrors();
    // A number the browser cannot read is not sent as "" (the default): it is refused here.
    for (const [field, id] of Object.entries(OUTPUT_INPUTS)) {
      if (!$(id).validity.badInput) continue;
      showUploadError('Invalid ' + field, []);
      showFieldError(field, field + ' must be a whole number');
      return;
    }
    for (const [field, value] of Object.entries(outputFields())) form.append(field, value);
    $('submit').disabled = true;
    try {
      const { status, body } = await api('/api/p/upload/', { method: 'POST', body: form });
      if (status === 202) {
        location.hash = '#/requests/' + body.request_id;
        loadRecent();
      } else if (status === 400 && body && body.field && showFieldError(body.field, body.details || body.error)) {
        showUploadError(body.error, []);
      } else {
        showUploadError((body && body.error) || 'Upload failed (HTTP ' + status + ')', body && body.details);
      }
    } catch (e) {
      showUploadError('Upload failed: ' + e.message, []);
    } finally {
      $('submit').disabled = !state.file;
    }
  }

  // --- One request: its products, a page at a time ---------------------------------------------
  // An image that does not load (the host answers 404, not an image) becomes a placeholder.
  function thumbnail(alt, cls) {
    const img = el('img', { alt, loading: 'lazy', class: cls });
    img.addEventListener('error', () => img.replaceWith(el('div', { class: 'placeholder', text: 'cannot load' })));
    return img;
  }

  // The original stays on its supplier's host until asked for: a click loads it in place (and
  // the loaded image links to it).
  function originalButton(input) {
    const button = el('button', { type: 'button', class: 'original', title: 'Load the original from ' + input },
      'original', el('small', { text: 'click to load' }));
    button.addEventListener('click', () => {
      const img = el('img', { alt: 'before', class: 'before', referrerpolicy: 'no-referrer' });
      img.addEventListener('error', () => link.replaceWith(el('div', { class: 'placeholder', text: 'cannot load' })));
      const link = el('a', { href: input, target: '_blank', rel: 'noopener noreferrer', title: input }, img);
      img.src = input;
      button.replaceWith(link);
    });
    return button;
  }

  function imageFigure(product, index, input, output) {
    const errors = product['Image Errors'] || [];
    const retries = product['Image Retries'] || [];
    const size = (product['Image Sizes'] || []).find((s) => s.index === index);
    const error = errors.find((e) => e.index === index);
    const retry = retries.find((e) => e.index === index);
    const before = isHttp(input) ? originalButton(input) : el('div', { class: 'placeholder', text: 'no URL' });
    let after;
    if (output && (isHttp(output) || output.startsWith('/')) && output !== input) {
      after = thumbnail('after', 'after');
      setImage(after, output);
    } else {
      after = el('div', { class: 'placeholder', text: error ? 'failed' : isHttp(input) ? '…' : 'kept' });
    }
    const caption = el('figcaption');
    if (size) {
      caption.append(bytes(size.input_bytes) + ' → ' + bytes(size.output_bytes) + ' ',
        el('span', { class: 'saving', text: '−' + saving(size.input_bytes, size.output_bytes) + '%' }));
      // An output stored before (the image cache, or another slot naming the same URL).
      if (size.reused) caption.append(' ', el('span', { class: 'reused', text: 'reused' }));
    } else if (error) {
      caption.append(el('span', { class: 'failed', text: error.error }));
    } else if (retry) {
      caption.append('retrying: ' + retry.error);
    } else if (!isHttp(input)) {
      caption.append('not a URL: passed through');
    } else {
      caption.append('waiting…');
    }
    return el('figure', { 'data-index': String(index) }, el('div', { class: 'pair' }, before, after), caption,
      variantList(product, index, input, size));
  }

  // A done image's variants (the request's presets): a link each, with its size. From "Image
  // Sizes" (URL, dimensions, bytes); from the product's "Variants" lists when a size lacks them.
  function variantList(product, index, input, size) {
    const lists = product.Variants;
    if (!lists || !size) return null;
    const shown = size.variants ? Object.entries(size.variants) : Object.entries(lists).map(([name, urls]) =>
      [name, { url: urls == null ? '' : urls.split(',')[index] || '' }]);
    const items = shown.filter(([, v]) => v.url && v.url !== input).map(([name, v]) => {
      const link = el('a', { class: 'variant', href: v.url, target: '_blank', rel: 'noopener', title: v.url,
        'data-variant': name, text: name });
      link.addEventListener('click', openWithKey);
      const facts = [v.width && v.height ? v.width + '×' + v.height : null,
        v.output_bytes != null ? bytes(v.output_bytes) : null].filter(Boolean).join(' · ');
      return el('li', {}, link, facts ? el('span', { class: 'muted', text: ' ' + facts }) : null);
    });
    return items.length ? el('ul', { class: 'variants' }, ...items) : null;
  }

  // Our media need the API key when keys are on: a link cannot send it, so open the image as a blob.
  function openWithKey(event) {
    const url = event.currentTarget.href;
    if (!apiKey() || !url.startsWith(location.origin + '/')) return;
    event.preventDefault();
    const tab = window.open('', '_blank');
    fetch(url, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error('HTTP ' + r.status))))
      .then((b) => { const u = URL.createObjectURL(b); state.objectUrls.push(u); if (tab) tab.location = u; })
      .catch(() => { if (tab) tab.close(); });
  }

  // The request's output settings, when it asked for other than the seed's: the main output and
  // each variant.
  function renderOutputs(outputs) {
    const box = $('outputs');
    box.hidden = !outputs;
    if (!outputs) { box.dataset.key = ''; return; }
    const key = JSON.stringify(outputs);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    const item = (name, settings, note) => el('li', { 'data-output': name }, el('b', { text: name }),
      ' — ' + describeSettings(settings), note ? el('span', { class: 'muted', text: ' ' + note }) : null);
    $('outputs-list').replaceChildren(item('main', outputs.main, '(Output Image Urls)'),
      ...Object.entries(outputs.variants || {}).map(([name, settings]) => item(name, settings, '(variant)')));
  }

  function productRow(product) {
    const inputs = product['Input Image Urls'].split(',');
    const outputs = product['Output Image Urls'] == null ? [] : product['Output Image Urls'].split(',');
    const figures = el('div', { class: 'images' });
    inputs.forEach((input, i) => {
      const output = outputs[i] || '';
      figures.append(imageFigure(product, i, input, output));
    });
    const failed = (product['Image Errors'] || []).length > 0;
    return el('tr', { 'data-serial': String(product['Serial Number']), class: failed ? 'has-failed' : '' },
      el('td', { text: String(product['Serial Number']) }), el('td', { text: product['Product Name'] }),
      el('td', {}, figures));
  }

  // The request's status and counts, from any answer about it (a page, or a cancel or retry).
  function renderCounts(status) {
    $('request-section').hidden = false;
    $('request-id').textContent = status.request_id;
    renderOutputs(status.outputs);
    const badge = $('request-status');
    badge.textContent = status.status;
    badge.className = 'badge ' + status.status;
    const p = status.progress;
    const finished = p.images_done + p.images_failed;
    const percent = p.images_total ? Math.round((finished / p.images_total) * 100) : 100;
    const bar = $('progress-bar');
    bar.style.width = percent + '%';
    bar.setAttribute('aria-valuenow', String(percent));
    bar.classList.toggle('done', status.status === 'completed');
    const ended = isFinished(status.status);
    $('cancel').hidden = status.status !== 'pending' && status.status !== 'processing';
    $('retry').hidden = !ended || p.images_failed === 0;
    // Reused images are done without a compression of their own (an output stored before).
    const reused = p.images_reused || 0;
    $('progress-text').textContent = count(finished) + ' of ' + count(p.images_total) + ' images finished (' +
      count(p.images_done - reused) + ' compressed, ' + (reused ? count(reused) + ' reused, ' : '') +
      count(p.images_failed) + ' failed)';
    $('sum-products').textContent = state.total == null ? '…' : count(state.total);
    $('sum-images').textContent = count(p.images_total);
    $('sum-done').textContent = count(p.images_done);
    $('sum-reused').textContent = count(reused);
    $('sum-failed').textContent = count(p.images_failed);
    $('sum-waiting').textContent = count(p.images_total - finished);
    const csv = '/api/p/requests/' + status.request_id + '/output.csv';
    $('csv-link').href = csv;
    $('csv-errors-link').href = csv + '?errors=1';
  }

  function renderPager() {
    const total = state.total || 0;
    const first = Math.min(state.offset + 1, total);
    const last = Math.min(state.offset + PAGE_SIZE, total);
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const page = Math.floor(state.offset / PAGE_SIZE) + 1;
    for (const pager of document.querySelectorAll('.pager')) {
      pager.hidden = total <= PAGE_SIZE;
      pager.querySelector('.info').textContent = total ? 'products ' + count(first) + '–' + count(last) +
        ' of ' + count(total) : 'no products';
      pager.querySelector('.prev').disabled = page <= 1;
      pager.querySelector('.next').disabled = page >= pages;
      pager.querySelector('.pages').textContent = 'page ' + page + ' of ' + pages;
    }
  }

  // The products of the page on view: only the rows that changed are rebuilt, so thumbnails
  // already shown do not flicker.
  function renderProducts(status) {
    const body = $('products').tBodies[0];
    const seen = new Set();
    status.products.forEach((product, position) => {
      const key = String(product['Serial Number']);
      const text = JSON.stringify(product);
      seen.add(key);
      const old = state.rows.get(key);
      if (old && old.text === text) return;
      const row = productRow(product);
      if (old) old.row.replaceWith(row); else body.insertBefore(row, body.children[position] || null);
      state.rows.set(key, { text, row });
    });
    for (const [key, { row }] of state.rows) if (!seen.has(key)) { row.remove(); state.rows.delete(key); }
    if (state.highlight != null) {
      const row = state.rows.get(String(state.highlight));
      if (row) {
        row.row.classList.add('highlight');
        row.row.scrollIntoView({ block: 'center' });
        state.highlight = null;
      }
    }
  }

  // --- One request: the summary (bytes and failed images) ---------------------------------------
  // Sizes and failures of some products, with what they cover: `read` of `total` products, from
  // the page on view or from reading the whole request once it has finished.
  function emptySummary(id, key, total) {
    return { id, key, total, read: 0, before: 0, after: 0, sized: 0, failed: [], from: 'scan', done: false };
  }
  function addProducts(summary, products, offset) {
    products.forEach((product, i) => {
      for (const s of product['Image Sizes'] || []) { summary.before += s.input_bytes; summary.after += s.output_bytes; summary.sized++; }
      for (const e of product['Image Errors'] || []) {
        summary.failed.push({ position: offset + i, serial: product['Serial Number'], name: product['Product Name'],
          index: e.index, url: e.url, error: e.error, attempts: e.attempts });
      }
    });
    summary.read += products.length;
  }

  function renderSummary() {
    const s = state.summary;
    if (!s) { $('totals').textContent = ''; $('totals-note').textContent = ''; $('sum-saved').textContent = '…'; renderFailed(); return; }
    $('totals').textContent = s.after ? 'Total: ' + bytes(s.before) + ' → ' + bytes(s.after) + ' (−' +
      saving(s.before, s.after) + '%)' : '';
    $('sum-saved').textContent = s.sized ? bytes(Math.max(0, s.before - s.after)) : '–';
    let note;
    const running = state.last && !isFinished(state.last.status);
    if (s.from === 'page') {
      note = 'Sizes and failed images of products ' + count(s.offset + 1) + '–' + count(s.offset + s.read) +
        ' (this page) only; the whole request is summed up once it has finished.';
    } else if (!s.done) {
      note = 'Summing up the whole request: ' + count(s.read) + ' of ' + count(s.total) + ' products read…';
    } else {
      note = 'Sizes (' + count(s.sized) + ' images done; a reused image counts the sizes of the image it reuses) ' +
        'and failed images over all ' + count(s.total) + ' products' + (running ? ', so far.' : '.');
    }
    $('totals-note').textContent = note;
    renderFailed();
  }

  // The failed images of the summary, filtered by the text box; a click shows the product.
  function renderFailed() {
    const s = state.summary;
    const all = s ? s.failed : [];
    $('failed-section').hidden = all.length === 0;
    if (!all.length) return;
    const words = $('failed-filter').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const matching = words.length ? all.filter((f) => {
      const text = (f.serial + ' ' + f.name + ' ' + f.url + ' ' + f.error).toLowerCase();
      return words.every((w) => text.includes(w));
    }) : all;
    $('failed-count').textContent = count(all.length) + (s.done || s.from === 'page' ? '' : '+');
    $('failed-shown').textContent = (words.length ? count(matching.length) + ' of ' + count(all.length) + ' match' :
      'In file order') + (matching.length > FAILED_SHOWN ? '; the first ' + FAILED_SHOWN + ' are shown.' : '.');
    const tbody = $('failed').tBodies[0];
    tbody.replaceChildren();
    for (const f of matching.slice(0, FAILED_SHOWN)) {
      const show = el('button', { type: 'button', class: 'small link', text: 'show' });
      show.addEventListener('click', () => showProduct(f.position, f.serial));
      tbody.append(el('tr', { 'data-serial': String(f.serial), 'data-index': String(f.index) },
        el('td', { text: String(f.serial) }), el('td', { text: f.name }), el('td', { text: '#' + (f.index + 1) }),
        el('td', { class: 'url' }, el('a', { href: f.url, target: '_blank', rel: 'noopener noreferrer', text: f.url })),
        el('td', { class: 'failed', text: f.error }), el('td', {}, show)));
    }
  }

  // Once a request has finished, reads all its products (a few hundred at a time, one read after
  // the other) to sum up its sizes and list its failed images; a request that fits the page on
  // view is summed up from it.
  async function summarise(status) {
    const id = status.request_id;
    const key = status.status + ' ' + JSON.stringify(status.progress);
    if (state.summary && state.summary.id === id && state.summary.key === key &&
        (state.summary.from === 'all' || state.summary.from === 'scan')) return;
    const summary = emptySummary(id, key, state.total);
    state.summary = summary;
    renderSummary();
    for (let offset = 0; offset < summary.total;) {
      let answer;
      try { answer = await api(statusPath(id, offset, SCAN_SIZE)); } catch (e) { answer = { status: 0 }; }
      if (state.summary !== summary) return;  // another request, or it changed meanwhile
      if (answer.status !== 200) {
        $('totals-note').textContent = 'Cannot read the products to sum them up (' +
          ((answer.body && answer.body.error) || 'HTTP ' + answer.status) + ').';
        return;
      }
      if (answer.body.status + ' ' + JSON.stringify(answer.body.progress) !== key) { poll(id, ++state.seq); return; }
      addProducts(summary, answer.body.products, offset);
      offset += answer.body.products.length;
      if (!answer.body.products.length) break;
      renderSummary();
    }
    summary.done = true;
    renderSummary();
  }

  // The summary from the page on view: all of the request when the page holds every product.
  function summariseFromPage(status) {
    const all = status.page.offset === 0 && status.products.length >= status.page.total;
    if (!all && isFinished(status.status)) { summarise(status); return; }
    const key = status.status + ' ' + JSON.stringify(status.progress);
    const summary = emptySummary(status.request_id, key, status.page.total);
    summary.from = all ? 'all' : 'page';
    summary.offset = status.page.offset;
    addProducts(summary, status.products, status.page.offset);
    summary.done = true;
    state.summary = summary;
    renderSummary();
  }

  // --- One request: polling --------------------------------------------------------------------
  // Reads the page on view (and the counts with it); while the request runs, again every half
  // second. `seq` changes with the request or page on view, which ends the older loop.
  async function poll(id, seq) {
    if (seq !== state.seq) return;
    clearTimeout(state.timer);
    try {
      const { status, body } = await api(statusPath(id, state.offset, PAGE_SIZE));
      if (seq !== state.seq) return;
      if (status !== 200) {
        $('request-section').hidden = false;
        $('request-id').textContent = id;
        $('progress-text').textContent = (body && body.error) || 'HTTP ' + status;
        return;
      }
      state.total = body.page.total;
      // A page past the end (an old link): the last page instead.
      if (state.offset > 0 && state.offset >= state.total) { goToOffset(state.total - 1); return; }
      state.last = body;
      renderCounts(body);
      renderPager();
      renderProducts(body);
      summariseFromPage(body);
      if (isFinished(body.status)) { loadRecent(); return; }
    } catch (e) {
      if (seq !== state.seq) return;
      $('progress-text').textContent = 'Cannot reach the server, retrying…';
    }
    state.timer = setTimeout(() => poll(id, seq), 500);
  }

  function showPage(offset) {
    clearTimeout(state.timer);
    dropObjectUrls();
    state.offset = offset;
    state.seq++;
    state.rows = new Map();
    $('products').tBodies[0].replaceChildren();
    renderPager();
    poll(state.requestId, state.seq);
  }

  function openRequest(id, offset) {
    if (id && id === state.requestId) {
      if (offset !== state.offset) showPage(offset);
      return;
    }
    clearTimeout(state.timer);
    dropObjectUrls();
    state.requestId = id;
    state.offset = offset;
    state.total = null;
    state.last = null;
    state.summary = null;
    state.highlight = null;
    state.seq++;
    state.rows = new Map();
    $('products').tBodies[0].replaceChildren();
    $('failed-filter').value = '';
    renderOutputs(null);
    renderSummary();
    if (id) poll(id, state.seq); else $('request-section').hidden = true;
  }

  const pageHash = (id, offset) => '#/requests/' + id + (offset ? '/page/' + (Math.floor(offset / PAGE_SIZE) + 1) : '');
  function goToOffset(offset) {
    const total = state.total || 0;
    const last = Math.max(0, Math.ceil(total / PAGE_SIZE) - 1) * PAGE_SIZE;
    location.hash = pageHash(state.requestId, Math.max(0, Math.min(offset, last)));
  }
  // The page holding the product at `position` (0-based), its row marked.
  function showProduct(position, serial) {
    const offset = Math.floor(position / PAGE_SIZE) * PAGE_SIZE;
    for (const tr of document.querySelectorAll('#products tr.highlight')) tr.classList.remove('highlight');
    state.highlight = serial;
    if (offset === state.offset) renderProducts({ products: state.last ? state.last.products : [] });
    else goToOffset(offset);
  }

  // Stops the request on view: its undone images are dropped, the rest keeps what it has. The
  // answer holds every product; only its counts are used, and the page on view is read again.
  async function cancelRequest() {
    const id = state.requestId;
    if (!id) return;
    $('cancel').disabled = true;
    const { status, body } = await api('/api/p/requests/' + encodeURIComponent(id) + '/cancel', { method: 'POST' });
    $('cancel').disabled = false;
    if (id !== state.requestId) return;
    if (status !== 200) { $('progress-text').textContent = (body && body.error) || 'HTTP ' + status; return; }
    renderCounts(body);
    poll(id, ++state.seq);
  }

  // Queues the failed images of a finished request again; the page follows it as after an upload.
  async function retryRequest() {
    const id = state.requestId;
    if (!id) return;
    $('retry').disabled = true;
    const { status, body } = await api('/api/p/requests/' + encodeURIComponent(id) + '/retry',
      { method: 'POST' });
    $('retry').disabled = false;
    if (id !== state.requestId) return;
    if (status !== 200) { $('progress-text').textContent = (body && body.error) || 'HTTP ' + status; return; }
    renderCounts(body);
    loadRecent();
    poll(id, ++state.seq);
  }

  // Downloads the CSV with the API key when keys are on (a plain link cannot send it).
  function downloadWithKey(event) {
    if (!apiKey()) return;
    event.preventDefault();
    const link = event.currentTarget;
    fetch(link.href, { headers: authHeaders() }).then((r) => r.blob()).then((b) => {
      const a = el('a', { href: URL.createObjectURL(b), download: 'output-' + state.requestId + '.csv' });
      document.body.append(a);
      a.click();
      a.remove();
    });
  }

  // --- Recent requests -----------------------------------------------------------------------
  async function loadRecent() {
    try {
      const { status, body } = await api('/api/p/requests/?limit=20');
      const tbody = $('recent').tBodies[0];
      tbody.replaceChildren();
      const list = status === 200 ? body.requests : [];
      $('recent-empty').hidden = list.length > 0;
      $('recent').hidden = list.length === 0;
      $('recent-empty').textContent = status === 401 ? 'Enter your API key to see your requests.' : 'No requests yet.';
      for (const r of list) {
        const notes = [r.progress.images_failed && r.progress.images_failed + ' failed',
          r.progress.images_reused && r.progress.images_reused + ' reused'].filter(Boolean);
        const row = el('tr', { 'data-id': r.request_id },
          el('td', { text: r.created_at.replace('T', ' ').replace(/\.\d+Z$/, '') }),
          el('td', {}, el('code', { text: r.request_id })),
          el('td', {}, el('span', { class: 'badge ' + r.status, text: r.status })),
          el('td', { text: (r.progress.images_done + r.progress.images_failed) + '/' + r.progress.images_total +
            (notes.length ? ' (' + notes.join(', ') + ')' : '') }));
        row.addEventListener('click', () => { location.hash = '#/requests/' + r.request_id; });
        tbody.append(row);
      }
    } catch (e) { /* the next refresh tries again */ }
  }

  // --- Wiring --------------------------------------------------------------------------------
  // #/requests/<id>, or #/requests/<id>/page/<n> (1-based) for a later page of its products.
  function route() {
    const m = location.hash.match(/^#\/requests\/([0-9a-fA-F-]{36})(?:\/page\/(\d{1,7}))?$/);
    const page = m && m[2] ? Math.max(1, Number(m[2])) : 1;
    openRequest(m ? m[1] : null, (page - 1) * PAGE_SIZE);
  }

  $('csv-file').addEventListener('change', (e) => pickFile(e.target.files[0]));
  const drop = $('drop');
  ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
  ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
  drop.addEventListener('drop', (e) => { if (e.dataTransfer.files.length) pickFile(e.dataTransfer.files[0]); });
  $('upload-form').addEventListener('submit', upload);
  for (const [field, id] of Object.entries(OUTPUT_INPUTS)) {
    const input = $(id);
    input.addEventListener(input.tagName === 'SELECT' || input.type === 'checkbox' ? 'change' : 'input', () => {
      clearFieldError(field);
      if (field === 'format') clearFieldError('progressive');
      renderOutputChoice();
    });
  }
  renderOutputChoice();
  $('refresh').addEventListener('click', loadRecent);
  $('cancel').addEventListener('click', cancelRequest);
  $('retry').addEventListener('click', retryRequest);
  $('csv-link').addEventListener('click', downloadWithKey);
  $('csv-errors-link').addEventListener('click', downloadWithKey);
  for (const pager of document.querySelectorAll('.pager')) {
    const bottom = pager.id === 'pager-bottom';
    const go = (offset) => {
      goToOffset(offset);
      if (bottom) $('products').scrollIntoView();
    };
    pager.querySelector('.prev').addEventListener('click', () => go(state.offset - PAGE_SIZE));
    pager.querySelector('.next').addEventListener('click', () => go(state.offset + PAGE_SIZE));
  }
  $('failed-filter').addEventListener('input', renderFailed);
  $('api-key').value = apiKey();
  $('api-key').addEventListener('change', (e) => {
    localStorage.setItem('imgproc.apiKey', e.target.value.trim());
    loadRecent();
    loadPresets();
    state.requestId = null;  // read it again, with the new key
    route();
  });
  window.addEventListener('hashchange', route);
  loadPresets();
  loadRecent();
  route();
})();
