// imgproc's web page: upload a CSV, follow its progress, see before/after thumbnails and sizes.
// Plain JavaScript, no build step, no third-party code; every request goes to this server only.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { file: null, requestId: null, timer: null, rows: new Map(), objectUrls: [] };

  // --- API -----------------------------------------------------------------------------------
  const apiKey = () => localStorage.getItem('imgproc.apiKey') || '';
  const authHeaders = () => (apiKey() ? { Authorization: 'Bearer ' + apiKey() } : {});

  async function api(path, options = {}) {
    const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    return { status: res.status, body };
  }

  // --- Formatting ----------------------------------------------------------------------------
  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(2) + ' MB';
  }
  const saving = (before, after) => (before > 0 ? Math.round((1 - after / before) * 100) : 0);
  const isHttp = (url) => /^https?:\/\//i.test(url);
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'class') node.className = v; else if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // Media need the API key when keys are on; an <img> cannot send it, so fetch it as a blob.
  function setImage(img, url) {
    const sameOrigin = url.startsWith(location.origin + '/') || url.startsWith('/');
    if (!apiKey() || !sameOrigin) { img.src = url; return; }
    fetch(url, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(r.status)))
      .then((b) => { const u = URL.createObjectURL(b); state.objectUrls.push(u); img.src = u; })
      .catch(() => { img.alt = 'not available'; });
  }

  // --- Upload --------------------------------------------------------------------------------
  function pickFile(file) {
    state.file = file || null;
    $('drop-text').textContent = file ? file.name + ' (' + bytes(file.size) + ')' : 'Drop a CSV here, or pick a file';
    $('submit').disabled = !file;
  }

  function showUploadError(message, details) {
    $('upload-error').hidden = !message;
    $('upload-error').textContent = message || '';
    const table = $('csv-errors');
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const d of details || []) {
      body.append(el('tr', {}, el('td', { text: String(d.row) }), el('td', { text: d.column || '(row)' }),
        el('td', { text: d.message })));
    }
    table.hidden = !(details && details.length);
  }

  async function upload(event) {
    event.preventDefault();
    if (!state.file) return;
    const form = new FormData();
    form.append('csv_file', state.file, state.file.name);
    const hook = $('webhook-url').value.trim();
    if (hook) form.append('webhook_url', hook);
    if ($('refresh-cache').checked) form.append('refresh', 'true');
    $('submit').disabled = true;
    showUploadError('', []);
    try {
      const { status, body } = await api('/api/p/upload/', { method: 'POST', body: form });
      if (status === 202) {
        location.hash = '#/requests/' + body.request_id;
        loadRecent();
      } else {
        showUploadError((body && body.error) || 'Upload failed (HTTP ' + status + ')', body && body.details);
      }
    } catch (e) {
      showUploadError('Upload failed: ' + e.message, []);
    } finally {
      $('submit').disabled = !state.file;
    }
  }

  // --- One request ---------------------------------------------------------------------------
  // An image that does not load (the host answers 404, not an image) becomes a placeholder.
  function thumbnail(alt, cls) {
    const img = el('img', { alt, loading: 'lazy', class: cls });
    img.addEventListener('error', () => img.replaceWith(el('div', { class: 'placeholder', text: 'cannot load' })));
    return img;
  }

  function imageFigure(product, index, input, output) {
    const errors = product['Image Errors'] || [];
    const retries = product['Image Retries'] || [];
    const size = (product['Image Sizes'] || []).find((s) => s.index === index);
    const error = errors.find((e) => e.index === index);
    const retry = retries.find((e) => e.index === index);
    const before = isHttp(input) ? thumbnail('before', 'before') : el('div', { class: 'placeholder', text: 'no URL' });
    if (isHttp(input)) before.src = input;
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
    return el('figure', { 'data-index': String(index) }, el('div', { class: 'pair' }, before, after), caption);
  }

  function productRow(product) {
    const inputs = product['Input Image Urls'].split(',');
    const outputs = product['Output Image Urls'] == null ? [] : product['Output Image Urls'].split(',');
    const figures = el('div', { class: 'images' });
    inputs.forEach((input, i) => {
      const output = outputs[i] || '';
      figures.append(imageFigure(product, i, input, output));
    });
    return el('tr', { 'data-serial': String(product['Serial Number']) },
      el('td', { text: String(product['Serial Number']) }), el('td', { text: product['Product Name'] }),
      el('td', {}, figures));
  }

  function render(status) {
    $('request-section').hidden = false;
    $('request-id').textContent = status.request_id;
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
    const ended = status.status === 'completed' || status.status === 'cancelled';
    $('cancel').hidden = status.status !== 'pending' && status.status !== 'processing';
    $('retry').hidden = !ended || p.images_failed === 0;
    // Reused images are done without a compression of their own (an output stored before).
    const reused = p.images_reused || 0;
    $('progress-text').textContent = finished + ' of ' + p.images_total + ' images finished (' +
      (p.images_done - reused) + ' compressed, ' + (reused ? reused + ' reused, ' : '') +
      p.images_failed + ' failed)';
    let before = 0; let after = 0;
    for (const product of status.products) {
      for (const s of product['Image Sizes'] || []) { before += s.input_bytes; after += s.output_bytes; }
    }
    $('totals').textContent = after ? 'Total: ' + bytes(before) + ' → ' + bytes(after) + ' (−' +
      saving(before, after) + '%)' : '';
    const csv = '/api/p/requests/' + status.request_id + '/output.csv';
    $('csv-link').href = csv;
    $('csv-errors-link').href = csv + '?errors=1';

    // Rebuild only the rows that changed, so thumbnails already shown do not flicker.
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
  }

  async function poll(id) {
    if (id !== state.requestId) return;
    try {
      const { status, body } = await api('/status/' + encodeURIComponent(id) + '/');
      if (id !== state.requestId) return;
      if (status !== 200) {
        $('request-section').hidden = false;
        $('request-id').textContent = id;
        $('progress-text').textContent = (body && body.error) || 'HTTP ' + status;
        return;
      }
      render(body);
      if (body.status === 'completed' || body.status === 'cancelled') { loadRecent(); return; }
    } catch (e) {
      $('progress-text').textContent = 'Cannot reach the server, retrying…';
    }
    state.timer = setTimeout(() => poll(id), 500);
  }

  function openRequest(id) {
    clearTimeout(state.timer);
    for (const u of state.objectUrls) URL.revokeObjectURL(u);
    state.objectUrls = [];
    state.requestId = id;
    state.rows = new Map();
    $('products').tBodies[0].replaceChildren();
    if (id) poll(id); else $('request-section').hidden = true;
  }

  // Stops the request on view: its undone images are dropped, the rest keeps what it has.
  async function cancelRequest() {
    const id = state.requestId;
    if (!id) return;
    $('cancel').disabled = true;
    const { status, body } = await api('/api/p/requests/' + encodeURIComponent(id) + '/cancel', { method: 'POST' });
    $('cancel').disabled = false;
    if (id !== state.requestId) return;
    if (status === 200) render(body); else $('progress-text').textContent = (body && body.error) || 'HTTP ' + status;
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
    render(body);
    loadRecent();
    clearTimeout(state.timer);
    poll(id);
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
  function route() {
    const m = location.hash.match(/^#\/requests\/([0-9a-fA-F-]{36})$/);
    openRequest(m ? m[1] : null);
  }

  $('csv-file').addEventListener('change', (e) => pickFile(e.target.files[0]));
  const drop = $('drop');
  ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
  ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
  drop.addEventListener('drop', (e) => { if (e.dataTransfer.files.length) pickFile(e.dataTransfer.files[0]); });
  $('upload-form').addEventListener('submit', upload);
  $('refresh').addEventListener('click', loadRecent);
  $('cancel').addEventListener('click', cancelRequest);
  $('retry').addEventListener('click', retryRequest);
  $('csv-link').addEventListener('click', downloadWithKey);
  $('csv-errors-link').addEventListener('click', downloadWithKey);
  $('api-key').value = apiKey();
  $('api-key').addEventListener('change', (e) => {
    localStorage.setItem('imgproc.apiKey', e.target.value.trim());
    loadRecent();
    route();
  });
  window.addEventListener('hashchange', route);
  loadRecent();
  route();
})();
