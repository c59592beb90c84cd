// The wasmgate portal: plain JavaScript over the gateway's own API (/system/*, /function/*, /metrics).
'use strict';

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000;
const MIN_SPAN_MS = 20 * 1000; // the charts' time axis grows from this to HISTORY_MS
const LATENCY_WINDOW = 5; // samples (about 10 s) behind each latency point
const LOG_LINES = 1000;
const BODY_SHOWN = 64 * 1024;
const SVG_NS = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const state = {
  functions: new Map(), // "name.namespace" -> the API's FunctionStatus
  rows: new Map(), // "name.namespace" -> its <tr>
  history: new Map(), // "name.namespace" -> [{t, total, errors, buckets: [[le, count]]}]
  metrics: new Map(), // "name.namespace" -> the latest parsed metrics
  selected: null, // {key, name, namespace}
  logs: null, // AbortController of the log stream
  lastLog: '', // timestamp of the newest log line shown
  lastLogSeen: new Set(), // "timestamp text" of the lines shown with that timestamp
  seq: 0,
  applied: 0,
  online: null, // whether the last refresh reached the gateway
};

// ---- talking to the gateway ----

class ApiError extends Error {
  constructor(status, statusText, text) {
    super(text || statusText);
    this.status = status;
    this.statusText = statusText;
  }
}

async function call(method, path, body, type) {
  const init = { method, headers: {}, cache: 'no-store' };
  if (body !== undefined) {
    init.body = body;
    if (type) init.headers['Content-Type'] = type;
  }
  const res = await fetch(path, init);
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, res.statusText, text.replace(/\n$/, ''));
  return text;
}

const getJson = async (path) => JSON.parse(await call('GET', path));

function message(err) {
  if (err instanceof ApiError) return `${err.status} ${err.statusText}: ${err.message}`;
  return (err && err.message) || String(err);
}

// ---- formatting ----

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtSeconds(s) {
  if (!Number.isFinite(s)) return '–';
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toPrecision(3)} ms`;
  return `${s.toPrecision(3)} s`;
}

function fmtRate(v) {
  if (!Number.isFinite(v)) return '–';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function ago(seconds) {
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return new Date(seconds * 1000).toLocaleString();
}

function shortImage(image) {
  if (image.startsWith('sha256:')) return `sha256:${image.slice(7, 19)}…`;
  return image.split('/').pop();
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function say(el, text, kind) {
  el.className = kind || '';
  el.textContent = text;
}

// Tells screen readers about an event (the visible status line changes too often to be live).
function announce(text) {
  setText($('announce'), text);
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  node.append(...children);
  return node;
}

// ---- metrics ----

const WANTED = new Set([
  'gateway_function_invocation_total',
  'gateway_functions_seconds_bucket',
  'wasmgate_last_cold_start_timestamp_seconds',
]);

function parseLabels(text) {
  const labels = {};
  const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (let m; (m = re.exec(text)); ) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

const number = (text) => (text === '+Inf' ? Infinity : Number(text));

function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || !WANTED.has(m[1])) continue;
    const labels = parseLabels(m[2] || '');
    const key = labels.function_name;
    if (key === undefined) continue;
    let s = out.get(key);
    if (!s) out.set(key, (s = { total: 0, errors: 0, buckets: new Map(), lastCold: 0 }));
    const v = number(m[3]);
    if (m[1] === 'gateway_function_invocation_total') {
      s.total += v;
      if (!/^2\d\d$/.test(labels.code || '')) s.errors += v;
    } else if (m[1] === 'gateway_functions_seconds_bucket') {
      const le = number(labels.le);
      s.buckets.set(le, (s.buckets.get(le) || 0) + v);
    } else {
      s.lastCold = v;
    }
  }
  return out;
}

function record(metrics, t) {
  for (const key of state.functions.keys()) {
    const m = metrics.get(key) || { total: 0, errors: 0, buckets: new Map() };
    let h = state.history.get(key);
    if (!h) state.history.set(key, (h = []));
    h.push({ t, total: m.total, errors: m.errors, buckets: [...m.buckets].sort((a, b) => a[0] - b[0]) });
    while (h.length > 2 && h[1].t < t - HISTORY_MS) h.shift();
  }
}

// Quantiles of the requests between two cumulative histograms, interpolated inside a bucket.
function quantiles(from, to, qs) {
  const before = new Map(from);
  const deltas = to.map(([le, c]) => [le, c - (before.get(le) || 0)]);
  const total = deltas.length ? deltas[deltas.length - 1][1] : 0;
  if (!(total > 0)) return null;
  return qs.map((q) => {
    const rank = q * total;
    let lowLe = 0;
    let lowCount = 0;
    for (const [le, c] of deltas) {
      if (c >= rank) {
        if (le === Infinity) return lowLe;
        const inside = c - lowCount;
        return inside > 0 ? lowLe + ((le - lowLe) * (rank - lowCount)) / inside : le;
      }
      lowLe = le;
      lowCount = c;
    }
    return lowLe;
  });
}

function series(key) {
  const h = state.history.get(key) || [];
  const out = { rps: [], err: [], p50: [], p95: [], p99: [] };
  for (let i = 1; i < h.length; i++) {
    const a = h[i - 1];
    const b = h[i];
    const dt = (b.t - a.t) / 1000;
    const done = b.total - a.total;
    if (dt <= 0 || done < 0) {
      // The gateway restarted (its counters went back): a gap.
      for (const s of Object.values(out)) s.push([b.t, null]);
      continue;
    }
    out.rps.push([b.t, done / dt]);
    out.err.push([b.t, (b.errors - a.errors) / dt]);
    const q = quantiles(h[Math.max(0, i - LATENCY_WINDOW)].buckets, b.buckets, [0.5, 0.95, 0.99]);
    out.p50.push([b.t, q && q[0]]);
    out.p95.push([b.t, q && q[1]]);
    out.p99.push([b.t, q && q[2]]);
  }
  return out;
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

// The charts' time axis: from the first sample (at least MIN_SPAN_MS, at most HISTORY_MS) to now.
function span(key) {
  const h = state.history.get(key) || [];
  const seen = h.length ? Date.now() - h[0].t : 0;
  return Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, seen));
}

// Draws lines of [time, value|null] points into a 300×60 SVG over the last `width` ms; returns the
// top of the scale.
function draw(svg, lines, width) {
  const t1 = Date.now();
  const t0 = t1 - width;
  let max = 0;
  for (const { points } of lines) for (const [, v] of points) if (v > max && Number.isFinite(v)) max = v;
  const top = max > 0 ? niceCeil(max) : 1;
  const shapes = [];
  for (let y = 15; y < 60; y += 15) {
    shapes.push(svgEl('line', { x1: 0, x2: 300, y1: y, y2: y, class: 'grid' }));
  }
  for (const { cls, points } of lines) {
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push(`${Number(run[0].split(',')[0]) + 1},${run[0].split(',')[1]}`);
      if (run.length) shapes.push(svgEl('polyline', { class: cls, points: run.join(' ') }));
      run = [];
    };
    for (const [t, v] of points) {
      if (v === null || !Number.isFinite(v) || t < t0) {
        flush();
        continue;
      }
      const x = ((t - t0) / width) * 300;
      const y = 58 - (v / top) * 55;
      run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    }
    flush();
  }
  svg.replaceChildren(...shapes);
  return top;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const last = (points) => {
  for (let i = points.length - 1; i >= 0; i--) if (points[i][1] !== null) return points[i][1];
  return NaN;
};
const peak = (points) => points.reduce((m, [, v]) => (v > m ? v : m), 0);

function drawCharts() {
  const sel = state.selected;
  if (!sel) return;
  const s = series(sel.key);
  const width = span(sel.key);
  const seconds = Math.round(width / 1000);
  setText($('charts-h'), seconds >= 300 ? 'Last five minutes' : seconds >= 60 ? `Last ${Math.round(seconds / 60)} min` : `Last ${seconds} s`);
  let top = draw($('c-rps'), [{ cls: 's-rps', points: s.rps }], width);
  setText($('c-rps-now'), `now ${fmtRate(last(s.rps))}/s, peak ${fmtRate(peak(s.rps))}/s (scale 0–${fmtRate(top)})`);
  top = draw($('c-lat'), [
    { cls: 's-p50', points: s.p50 },
    { cls: 's-p95', points: s.p95 },
    { cls: 's-p99', points: s.p99 },
  ], width);
  setText(
    $('c-lat-now'),
    Number.isFinite(last(s.p50))
      ? `latest p50 ${fmtSeconds(last(s.p50))}, p95 ${fmtSeconds(last(s.p95))}, p99 ${fmtSeconds(last(s.p99))} (scale 0–${fmtSeconds(top)})`
      : 'no requests yet',
  );
  top = draw($('c-err'), [{ cls: 's-err', points: s.err }], width);
  setText($('c-err-now'), `now ${fmtRate(last(s.err))}/s, peak ${fmtRate(peak(s.err))}/s (scale 0–${fmtRate(top)})`);
}

// ---- the list ----

function makeRow(key) {
  const open = el('button', { type: 'button', className: 'link' });
  open.addEventListener('click', () => select(key, true));
  const cells = {
    name: el('th', { scope: 'row' }, open),
    namespace: el('td'),
    image: el('td', { className: 'mono' }),
    world: el('td', { className: 'mono' }),
    replicas: el('td', { className: 'num' }),
    invocations: el('td', { className: 'num' }),
    cold: el('td'),
    triggers: el('td', { className: 'mono' }),
  };
  const tr = el('tr', {}, ...Object.values(cells));
  tr.cells_ = cells;
  tr.open_ = open;
  return tr;
}

function fillRow(tr, f, m) {
  const c = tr.cells_;
  setText(tr.open_, f.name);
  setText(c.namespace, f.namespace);
  setText(c.image, shortImage(f.image || ''));
  c.image.title = f.image || '';
  setText(c.world, f.world || '');
  setText(c.replicas, `${f.availableReplicas}/${f.replicas}`);
  c.replicas.title = `${f.availableReplicas} ready of ${f.replicas}`;
  setText(c.invocations, String(f.invocationCount));
  const cold = m && m.lastCold;
  setText(c.cold, cold ? ago(cold) : 'never');
  c.cold.title = cold ? new Date(cold * 1000).toISOString() : '';
  setText(c.triggers, triggerText(f));
  c.triggers.title = f.triggers ? f.triggers.route : '';
}

// What runs a function (its `triggers`): HTTP always, a schedule and NATS topics when annotated.
function triggerText(f) {
  const t = f.triggers || {};
  const parts = ['HTTP'];
  const mode = t.async ? ' (async)' : '';
  if (t.schedule) parts.push(`cron ${t.schedule}${mode}`);
  if (t.topics && t.topics.length) parts.push(`topics ${t.topics.join(', ')}${mode}`);
  const components = componentText(f);
  if (components) parts.push(components);
  return parts.join(' · ');
}

// A Spin app's components and their routes: `Spin: front /api/... /x; back private`.
function componentText(f) {
  if (!f.components || !f.components.length) return '';
  const each = f.components.map((c) => [c.name, ...c.routes, ...(c.private ? ['private'] : [])].join(' '));
  return `Spin: ${each.join('; ')}`;
}

function updateTable(list, metrics) {
  list.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const tbody = $('functions').tBodies[0];
  const seen = new Set();
  list.forEach((f, i) => {
    const key = `${f.name}.${f.namespace}`;
    seen.add(key);
    state.functions.set(key, f);
    let tr = state.rows.get(key);
    if (!tr) state.rows.set(key, (tr = makeRow(key)));
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    fillRow(tr, f, metrics.get(key));
  });
  for (const [key, tr] of state.rows) {
    if (seen.has(key)) continue;
    tr.remove();
    for (const map of [state.rows, state.functions, state.history]) map.delete(key);
  }
  state.metrics = metrics;
  $('empty').hidden = list.length > 0;
}

function updateNamespaces(names) {
  const list = $('namespaces');
  if ([...list.options].map((o) => o.value).join() === names.join()) return;
  list.replaceChildren(...names.map((n) => el('option', { value: n })));
}

async function refresh() {
  const seq = ++state.seq;
  try {
    const [namespaces, metricsText] = await Promise.all([getJson('/system/namespaces'), call('GET', '/metrics')]);
    const lists = await Promise.all(
      namespaces.map((ns) =>
        getJson(`/system/functions?namespace=${enc(ns)}`).catch((err) => {
          if (err instanceof ApiError && err.status === 400) return []; // deleted meanwhile
          throw err;
        }),
      ),
    );
    if (seq < state.applied) return;
    state.applied = seq;
    const metrics = parseMetrics(metricsText);
    updateNamespaces(namespaces);
    updateTable(lists.flat(), metrics);
    record(metrics, Date.now());
    showSelected();
    drawCharts();
    const n = state.functions.size;
    say($('conn'), `${n} function${n === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`, 'muted');
    if (state.online === false) announce('Connected to the gateway again.');
    state.online = true;
  } catch (err) {
    say($('conn'), `Cannot reach the gateway: ${message(err)}`, 'error');
    if (state.online !== false) announce(`Cannot reach the gateway: ${message(err)}`);
    state.online = false;
  }
}

let timer = 0;
async function loop() {
  clearTimeout(timer);
  await refresh();
  clearTimeout(timer);
  timer = setTimeout(loop, document.hidden ? POLL_MS * 5 : POLL_MS);
}
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) loop();
});

// ---- one function ----

function select(key, focus) {
  const f = state.functions.get(key);
  if (!f) return;
  if (!state.selected || state.selected.key !== key) {
    state.selected = { key, name: f.name, namespace: f.namespace };
    for (const [k, tr] of state.rows) {
      if (k === key) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    }
    setText($('detail-name'), key);
    $('detail').hidden = false;
    $('t-result').hidden = true;
    say($('t-status'), '');
    $('logs').replaceChildren();
    state.lastLog = '';
    state.lastLogSeen.clear();
    startLogs();
    showSelected();
    drawCharts();
    history.replaceState(null, '', `#fn=${enc(key)}`);
  }
  if (focus) $('detail-h').focus();
}

function unselect() {
  const sel = state.selected;
  stopLogs();
  state.selected = null;
  $('detail').hidden = true;
  for (const tr of state.rows.values()) tr.removeAttribute('aria-current');
  history.replaceState(null, '', location.pathname);
  const tr = sel && state.rows.get(sel.key);
  if (tr) tr.open_.focus();
  else $('functions-h').focus();
}

function showSelected() {
  const sel = state.selected;
  if (!sel) return;
  const f = state.functions.get(sel.key);
  if (!f) {
    say($('detail-status'), 'This function is no longer deployed.', 'error');
    return;
  }
  const parts = [`image ${f.image}`, `created ${f.createdAt}`];
  if (f.triggers) parts.push(`route ${f.triggers.route}`, `triggers ${triggerText(f)}`);
  if (f.limits && f.limits.memory) parts.push(`memory ${f.limits.memory}`);
  const env = Object.keys(f.envVars || {});
  if (env.length) parts.push(`environment ${env.join(', ')}`);
  setText($('detail-status'), parts.join(' · '));
}

$('close').addEventListener('click', unselect);

$('delete').addEventListener('click', async () => {
  const sel = state.selected;
  if (!sel || !confirm(`Delete ${sel.key}? Requests running now finish; new ones get 404.`)) return;
  try {
    await call('DELETE', '/system/functions', JSON.stringify({ functionName: sel.name, namespace: sel.namespace }), 'application/json');
    unselect();
    await refresh();
    $('functions-h').focus();
    announce(`Deleted ${sel.key}.`);
  } catch (err) {
    say($('detail-status'), `Could not delete: ${message(err)}`, 'error');
  }
});

// ---- try it ----

function parseLines(text, sep, what) {
  const pairs = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const at = line.indexOf(sep);
    if (at <= 0) throw new Error(`${what} line ${i + 1} is not ${what === 'Header' ? 'Name: value' : 'NAME=value'}: ${line}`);
    pairs.push([line.slice(0, at).trim(), line.slice(at + 1).trim()]);
  });
  return pairs;
}

$('try').addEventListener('submit', async (event) => {
  event.preventDefault();
  const sel = state.selected;
  if (!sel) return;
  const status = $('t-status');
  const method = $('t-method').value;
  let path = $('t-path').value.trim() || '/';
  if (!path.startsWith('/')) path = `/${path}`;
  const body = $('t-body').value;
  let headers;
  try {
    headers = new Headers(parseLines($('t-headers').value, ':', 'Header'));
  } catch (err) {
    say(status, err.message, 'error');
    return;
  }
  if (body && (method === 'GET' || method === 'HEAD')) {
    say(status, `A browser cannot send a body with ${method}: choose another method or empty the body.`, 'error');
    return;
  }
  const button = $('t-send');
  button.disabled = true;
  say(status, `Sending ${method} ${path}…`);
  const started = performance.now();
  try {
    const res = await fetch(`/function/${enc(sel.name)}.${enc(sel.namespace)}${path}`, {
      method,
      headers,
      body: body || undefined,
      cache: 'no-store',
      redirect: 'manual',
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const roundTrip = (performance.now() - started) / 1000;
    const gateway = Number(res.headers.get('x-duration-seconds'));
    const cold = res.headers.get('x-wasmgate-cold-start');
    const coldText = cold === 'true' ? 'yes' : cold === 'false' ? 'no' : 'not reported';
    const code = $('t-code');
    code.textContent = `${res.status} ${res.statusText}`;
    code.className = res.ok ? 'ok' : 'error';
    $('t-duration').textContent = res.headers.has('x-duration-seconds')
      ? `${fmtSeconds(gateway)} (round trip ${fmtSeconds(roundTrip)})`
      : fmtSeconds(roundTrip);
    $('t-cold').textContent = coldText;
    // A traced answer names the gateway's span in W3C `traceresponse`: its trace id finds the call
    // in the tracing backend.
    const traced = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(res.headers.get('traceresponse') || '');
    $('t-trace').textContent = traced ? traced[1] : 'not traced';
    $('t-resp-headers').textContent = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
    let text = new TextDecoder().decode(bytes.subarray(0, BODY_SHOWN));
    if (bytes.length > BODY_SHOWN) text += `\n… ${fmtBytes(bytes.length - BODY_SHOWN)} more`;
    $('t-resp-body').textContent = bytes.length ? text : '(empty body)';
    $('t-result').hidden = false;
    say(
      status,
      `${method} ${path}: ${res.status} ${res.statusText} in ${fmtSeconds(roundTrip)}, ${fmtBytes(bytes.length)}${cold === 'true' ? ', cold start' : ''}.`,
      res.ok ? 'ok' : 'error',
    );
  } catch (err) {
    say(status, `The request failed: ${message(err)}`, 'error');
  } finally {
    button.disabled = false;
  }
});

// ---- logs ----

function stopLogs() {
  if (state.logs) state.logs.abort();
  state.logs = null;
}

function showLog(entry) {
  const id = `${entry.timestamp} ${entry.text}`;
  if (entry.timestamp < state.lastLog || (entry.timestamp === state.lastLog && state.lastLogSeen.has(id))) return;
  if (entry.timestamp !== state.lastLog) state.lastLogSeen.clear();
  state.lastLog = entry.timestamp;
  state.lastLogSeen.add(id);
  const pre = $('logs');
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const when = new Date(entry.timestamp);
  const time = el('time', { dateTime: entry.timestamp }, Number.isNaN(when.getTime()) ? entry.timestamp : when.toLocaleTimeString());
  pre.append(el('span', entry.trace_id ? { title: `trace ${entry.trace_id}` } : {}, time, ` ${entry.text}\n`));
  while (pre.childElementCount > LOG_LINES) pre.firstElementChild.remove();
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

function logNote(text) {
  $('logs').append(el('span', { className: 'muted' }, `— ${text}\n`));
}

async function startLogs() {
  stopLogs();
  const sel = state.selected;
  if (!sel || !$('l-follow').checked) return;
  const ctrl = new AbortController();
  state.logs = ctrl;
  let url = `/system/logs?name=${enc(sel.name)}&namespace=${enc(sel.namespace)}&follow=true`;
  url += state.lastLog ? `&since=${enc(state.lastLog)}` : '&tail=100';
  try {
    const res = await fetch(url, { signal: ctrl.signal, cache: 'no-store' });
    if (!res.ok) throw new ApiError(res.status, res.statusText, (await res.text()).trim());
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let nl; (nl = buffer.indexOf('\n')) >= 0; ) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim()) showLog(JSON.parse(line));
      }
    }
  } catch (err) {
    if (ctrl.signal.aborted) return;
    logNote(`log stream interrupted (${message(err)}); reconnecting`);
  }
  // The stream ended (the gateway restarted or closed it): follow again shortly.
  if (state.logs === ctrl) setTimeout(() => state.logs === ctrl && startLogs(), POLL_MS);
}

$('l-follow').addEventListener('change', () => ($('l-follow').checked ? startLogs() : stopLogs()));
$('l-clear').addEventListener('click', () => $('logs').replaceChildren());

// ---- deploy ----

const fileInput = $('d-file');
const deployCard = $('deploy').closest('.card');
let dropped = null;
let suggested = '';

function chosen(file) {
  $('d-file-hint').textContent = `${file.name}, ${fmtBytes(file.size)}`;
  const nameInput = $('d-name');
  if (!nameInput.value || nameInput.value === suggested) {
    suggested = file.name.replace(/\.wasm$/i, '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
    nameInput.value = suggested;
  }
}

fileInput.addEventListener('change', () => {
  dropped = null;
  if (fileInput.files[0]) chosen(fileInput.files[0]);
});
deployCard.addEventListener('dragover', (event) => {
  event.preventDefault();
  deployCard.classList.add('dragging');
});
deployCard.addEventListener('dragleave', (event) => {
  if (!deployCard.contains(event.relatedTarget)) deployCard.classList.remove('dragging');
});
deployCard.addEventListener('drop', (event) => {
  event.preventDefault();
  deployCard.classList.remove('dragging');
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (!file) return;
  dropped = file;
  try {
    fileInput.files = event.dataTransfer.files;
  } catch {
    // Older browsers cannot set it; the dropped file is kept aside.
  }
  chosen(file);
});

function refused(what, err) {
  const out = $('d-status');
  out.className = 'error';
  if (err instanceof ApiError) {
    out.replaceChildren(
      el('p', { textContent: `${what} (${err.status} ${err.statusText}):` }),
      el('pre', { className: 'out', textContent: err.message }),
    );
  } else {
    out.replaceChildren(el('p', { textContent: `${what}: ${message(err)}` }));
  }
}

async function deploySpec(spec) {
  const body = JSON.stringify(spec);
  try {
    await call('PUT', '/system/functions', body, 'application/json');
  } catch (err) {
    // faas-cli's sequence: update, and create when there is nothing to update.
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    await call('POST', '/system/functions', body, 'application/json');
  }
}

$('deploy').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = $('d-status');
  const file = fileInput.files[0] || dropped;
  const name = $('d-name').value.trim();
  const namespace = $('d-ns').value.trim();
  const problem = (text, input) => {
    say(out, text, 'error');
    input.focus();
  };
  if (!file) return problem('Choose a .wasm file first.', fileInput);
  if (!name) return problem('Give the function a name.', $('d-name'));
  let envVars;
  try {
    envVars = Object.fromEntries(parseLines($('d-env').value, '=', 'Environment'));
  } catch (err) {
    return problem(err.message, $('d-env'));
  }
  const timeout = $('d-timeout').value.trim();
  const inflight = $('d-inflight').value.trim();
  const memory = $('d-memory').value.trim();
  if (timeout) envVars.exec_timeout = timeout;
  if (inflight) envVars.max_inflight = inflight;
  const button = $('d-submit');
  button.disabled = true;
  try {
    say(out, `Uploading ${file.name} (${fmtBytes(file.size)})…`);
    let digest;
    try {
      digest = JSON.parse(await call('POST', '/system/artifacts', file, 'application/wasm')).digest;
    } catch (err) {
      return refused('The gateway refused the component', err);
    }
    const spec = { service: name, image: digest, envVars, labels: {}, annotations: {} };
    if (namespace) spec.namespace = namespace;
    if (memory) spec.limits = { memory };
    say(out, `Deploying ${name}…`);
    try {
      await deploySpec(spec);
    } catch (err) {
      return refused('The gateway refused the deployment', err);
    }
    await refresh();
    const key = `${name}.${namespace || 'openfaas-fn'}`;
    say(out, `Deployed ${key} from ${shortImage(digest)}; it is open above to try.`, 'ok');
    select(key, false);
  } finally {
    button.disabled = false;
  }
});

// ---- start ----

(async () => {
  await loop();
  const wanted = /^#fn=(.+)$/.exec(location.hash);
  if (wanted) select(decodeURIComponent(wanted[1]), true);
})();
