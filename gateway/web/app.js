// The ota gateway's dashboard: plain JavaScript, no build step, no CDN.
// Data: the gateway's JSON API (/api/...); live updates: the "ota-live"
// WebSocket, which pushes fleet and campaign counts once a second while
// anything changes; the device table is fetched one page at a time, so a
// fleet of 10,000 devices is never 10,000 rows in the page.
'use strict';

const PAGE = 50;
const STATES = ['idle', 'downloading', 'verifying', 'installing', 'restarting',
  'committed', 'failed', 'rolled_back', 'offline'];
const $ = (id) => document.getElementById(id);

const ui = {
  campaigns: [],
  selected: null,       // release id the chart shows
  selectedByUser: false,
  offset: 0,
  seq: -1,              // newest event sequence seen
  lastDevices: 0, lastSeries: 0, lastEvents: 0,
  ws: null,
};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
  return r.json();
}

function ms(v) {
  if (v === undefined || v === null || v < 0) return '-';
  if (v < 1000) return v + ' ms';
  if (v < 100000) return (v / 1000).toFixed(2) + ' s';
  return Math.round(v / 1000) + ' s';
}

// Bytes as `ota-gateway status` writes them (1024-based units).
function bytes(v) {
  const unit = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; u++; }
  return u ? v.toFixed(1) + ' ' + unit[u] : v + ' ' + unit[0];
}

function short(id) { return id ? id.slice(0, 8) : ''; }

// ---------------------------------------------------------------- campaigns

function progressBar(c) {
  const t = Math.max(c.targets, c.committed + c.failed + c.active, 1);
  const bar = el('span', { class: 'bar', title:
    `${c.committed} committed, ${c.failed} failed, ${c.active} active of ${c.targets}` });
  const parts = [['c', c.committed], ['f', c.failed], ['a', c.active]];
  let left = 0;
  for (const [cls, n] of parts) {
    const s = el('span', { class: cls });
    s.style.left = (100 * left / t) + '%';
    s.style.width = (100 * n / t) + '%';
    left += n;
    bar.append(s);
  }
  return bar;
}

function actionButton(c, action) {
  return el('button', { type: 'button', class: 'act-' + action, text: action,
    'data-release': c.release, onclick: (ev) => {
      ev.stopPropagation();
      command(ui.campaigns.find((x) => x.release === c.release) || c, action);
    } });
}

function campaignRow(c) {
  const tr = el('tr', { 'data-release': c.release,
    onclick: () => { ui.selected = c.release; ui.selectedByUser = true;
      renderCampaigns(ui.campaigns); refreshSeries(true).catch(report); } },
  el('td', { text: short(c.release), title: c.release }),
  el('td', { text: c.product }),
  el('td', { text: c.version }),
  el('td', {}, el('span', { class: 'badge' })),
  el('td', { class: 'progress' }),
  el('td', { class: 'num targets' }),
  el('td', { class: 'num committed' }),
  el('td', { class: 'num failed' }),
  el('td', { class: 'num active' }),
  el('td', {}, actionButton(c, 'pause'), actionButton(c, 'resume'),
    actionButton(c, 'abort')));
  return tr;
}

// Rows are updated in place (not rebuilt each second), so a button keeps
// its place under the pointer while live updates arrive.
function updateRow(tr, c) {
  tr.dataset.state = c.state;
  const badge = tr.querySelector('.badge');
  badge.className = 'badge st-' + c.state;
  badge.textContent = c.state;
  badge.title = c.pause_reason || '';
  tr.querySelector('td.progress').replaceChildren(progressBar(c));
  for (const k of ['targets', 'committed', 'failed', 'active'])
    tr.querySelector('td.' + k).textContent = c[k];
  for (const b of tr.querySelectorAll('button')) {
    const a = b.textContent;
    b.disabled = c.state === 'aborted' || (a === 'pause' && c.state === 'paused') ||
      (a === 'resume' && c.state !== 'paused' && c.state !== 'canary');
  }
  tr.className = c.release === ui.selected ? 'sel' : '';
}

function renderCampaigns(list) {
  ui.campaigns = list;
  const tb = $('campaigns').tBodies[0];
  if (!ui.selectedByUser || !list.some((c) => c.release === ui.selected))
    ui.selected = list.length ? list[0].release : null;
  const rows = new Map([...tb.rows].map((tr) => [tr.dataset.release, tr]));
  list.forEach((c, i) => {
    let tr = rows.get(c.release);
    if (!tr) tr = campaignRow(c);
    rows.delete(c.release);
    if (tb.rows[i] !== tr) tb.insertBefore(tr, tb.rows[i] || null);
    updateRow(tr, c);
  });
  for (const tr of rows.values()) tr.remove();
  const sel = $('f-release'), cur = sel.value;
  if (sel.options.length !== list.length + 1) {
    sel.replaceChildren(el('option', { value: '', text: 'any' }),
      ...list.map((c) => el('option', { value: c.release,
        text: `${short(c.release)} ${c.product} ${c.version}` })));
    sel.value = cur;
  }
  const c = list.find((x) => x.release === ui.selected);
  $('chart-title').textContent = c ? `${c.product} ${c.version} (${short(c.release)})` : '-';
}

async function command(c, action) {
  if (action === 'abort' &&
      !window.confirm(`Abort ${c.product} ${c.version}? It can never be resumed.`))
    return;
  const v = $('verdict');
  v.className = 'verdict';
  v.textContent = `${action} ${c.product} ${c.version}: asking the gateway...`;
  try {
    const r = await fetch(`/api/campaigns/${c.release}/${action}`,
      { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    const j = await r.json();
    v.className = 'verdict ' + (j.verdict || 'error');
    v.dataset.verdict = j.verdict || 'error';
    v.textContent = `${action} ${c.product} ${c.version}: ${j.verdict || 'error'}` +
      (j.state ? ` (now ${j.state})` : '') + (j.reason ? ` - ${j.reason}` : '') +
      (j.error ? ` - ${j.error}` : '');
  } catch (e) {
    v.className = 'verdict error';
    v.dataset.verdict = 'error';
    v.textContent = `${action}: no answer from the gateway (${e.message})`;
  }
  refreshAll().catch(report);
}

// ---------------------------------------------------------------- fleet

function hrows(box, rows, total) {
  box.replaceChildren(...rows.map(([label, n, key]) => {
    const b = el('div', { class: 'hb' });
    b.style.width = (total ? 100 * n / total : 0) + '%';
    return el('div', { class: 'hrow', 'data-key': key },
      el('span', { text: label }), el('span', {}, b), el('span', { class: 'n', text: n }));
  }));
}

function renderFleet(f) {
  $('fleet-total').textContent = `${f.devices} devices, ${f.online} online`;
  hrows($('fleet-states'), STATES.map((s) => [s, f.states[s] || 0, s]), f.devices);
  const v = f.versions.slice().sort((a, b) => b.devices - a.devices);
  hrows($('fleet-versions'), v.map((x) => [`${x.product} ${x.version}`, x.devices,
    `${x.product} ${x.version}`]), f.devices);
}

// ---------------------------------------------------------------- devices

function progressOf(d) {
  if (d.state === 'committed') return '100%';
  if (!d.fragments) return '-';
  return Math.floor(100 * d.acked / d.fragments) + '%';
}

async function refreshDevices() {
  ui.lastDevices = Date.now();
  const q = new URLSearchParams({ offset: ui.offset, limit: PAGE });
  for (const [k, id] of [['state', 'f-state'], ['release', 'f-release'],
    ['group', 'f-group'], ['name', 'f-name']]) {
    const v = $(id).value.trim();
    if (v) q.set(k, v);
  }
  const j = await getJSON('/api/devices?' + q);
  if (j.total && ui.offset >= j.total) { ui.offset = 0; return refreshDevices(); }
  $('dev-total').textContent = j.total;
  $('dev-range').textContent = j.total ? `${j.offset + 1}-${j.offset + j.devices.length}` : '0';
  $('prev').disabled = j.offset === 0;
  $('next').disabled = j.offset + j.devices.length >= j.total;
  $('devices').tBodies[0].replaceChildren(...j.devices.map((d) => {
    const t = d.timings || {};
    return el('tr', { 'data-device': d.device },
      el('td', { text: d.device }),
      el('td', {}, el('span', { class: 'badge st-' + d.state, text: d.state })),
      el('td', { text: d.version }),
      el('td', { text: d.group }),
      el('td', { class: 'num', text: progressOf(d) }),
      el('td', { class: 'num', text: ms(t.download_ms) }),
      el('td', { class: 'num', text: ms(t.verify_ms) }),
      el('td', { class: 'num', text: ms(t.install_ms) }),
      el('td', { class: 'num', text: ms(t.restart_ms) }),
      el('td', { class: 'num', text: ms(t.total_ms) }),
      el('td', { class: 'enc', text: d.encoding || '-' }),
      el('td', { class: 'num wire', text: d.wire_bytes ? bytes(d.wire_bytes) : '-' }),
      el('td', { class: 'err', text: d.error || '' }));
  }));
}

// ---------------------------------------------------------------- chart

function niceMax(v) {
  if (v <= 5) return 5;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(points) {
  const cv = $('chart'), g = cv.getContext('2d');
  const W = cv.width, H = cv.height, L = 48, R = 12, T = 10, B = 28;
  g.clearRect(0, 0, W, H);
  g.font = '12px system-ui, sans-serif';
  g.fillStyle = '#556';
  const last = points.length ? points[points.length - 1] : [0, 0, 0, 0];
  const t0 = points.length ? points[0][0] : 0, t1 = Math.max(last[0], t0 + 1);
  let ymax = 0;
  for (const p of points) ymax = Math.max(ymax, p[1], p[2], p[3]);
  ymax = niceMax(ymax);
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (v) => H - B - (H - B - T) * v / ymax;
  g.strokeStyle = '#e3e7ee';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke();
    g.textAlign = 'right'; g.fillText(String(Math.round(v)), L - 6, y(v) + 4);
  }
  const span = (t1 - t0) / 1000;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (t1 - t0) * i / 4;
    g.textAlign = i === 0 ? 'left' : i === 4 ? 'right' : 'center';
    g.fillText(span < 600 ? `+${Math.round((t - t0) / 1000)} s`
      : new Date(t).toLocaleTimeString(), x(t), H - 8);
  }
  const series = [[1, '#2e9d5b'], [2, '#c9443f'], [3, '#3a78d8']];
  for (const [k, color] of series) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    points.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[k])) : g.moveTo(x(p[0]), y(p[k]))));
    g.stroke();
  }
  $('n-committed').textContent = last[1];
  $('n-failed').textContent = last[2];
  $('n-busy').textContent = last[3];
  cv.dataset.committed = last[1];
  cv.dataset.failed = last[2];
  cv.dataset.busy = last[3];
  cv.dataset.points = points.length;
}

async function refreshSeries(force) {
  if (!ui.selected) { drawChart([]); return; }
  if (!force && Date.now() - ui.lastSeries < 2000) return;
  ui.lastSeries = Date.now();
  const j = await getJSON(`/api/campaigns/${ui.selected}/series?points=150`);
  if (j.release === ui.selected) {
    $('chart').dataset.release = j.release;
    drawChart(j.points);
  }
}

// ---------------------------------------------------------------- events

async function refreshEvents() {
  ui.lastEvents = Date.now();
  const j = await getJSON('/api/events?limit=30');
  $('events').replaceChildren(...j.events.map((e) => el('li', {},
    el('span', { class: 't', text: new Date(e.ts).toLocaleTimeString() }),
    `${e.event} ${e.device || ''} ${short(e.release)} ${e.detail || ''}`)));
}

// ---------------------------------------------------------------- live

function setLive(on, text) {
  const b = $('live');
  b.className = 'badge ' + (on ? 'on' : 'off');
  b.textContent = text;
}

function onLive(j) {
  setLive(true, 'live');
  $('updated').textContent = 'updated ' + new Date(j.ts).toLocaleTimeString();
  renderFleet(j.fleet);
  renderCampaigns(j.campaigns);
  if (j.seq !== ui.seq) {
    ui.seq = j.seq;
    const now = Date.now();
    if (now - ui.lastDevices >= 1000) refreshDevices().catch(report);
    if (now - ui.lastEvents >= 1000) refreshEvents().catch(report);
    refreshSeries(false).catch(report);
  } else if (Date.now() - ui.lastSeries >= 2000) {
    refreshSeries(true).catch(report); // the "in progress" line moves on
  }
}

function report(e) { setLive(false, 'error: ' + e.message); }

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/`, 'ota-live');
  ui.ws = ws;
  ws.onopen = () => setLive(true, 'live');
  ws.onmessage = (m) => { try { onLive(JSON.parse(m.data)); } catch (e) { report(e); } };
  ws.onclose = () => {
    setLive(false, 'reconnecting');
    setTimeout(connect, 2000);
  };
}

async function refreshAll() {
  const [f, c] = await Promise.all([getJSON('/api/fleet'), getJSON('/api/campaigns')]);
  renderFleet(f);
  renderCampaigns(c.campaigns);
  await Promise.all([refreshDevices(), refreshSeries(true), refreshEvents()]);
}

function init() {
  const st = $('f-state');
  for (const s of STATES) st.append(el('option', { value: s, text: s }));
  const refilter = () => { ui.offset = 0; refreshDevices().catch(report); };
  for (const id of ['f-state', 'f-release']) $(id).addEventListener('change', refilter);
  for (const id of ['f-group', 'f-name']) $(id).addEventListener('input', refilter);
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  $('prev').addEventListener('click', () => {
    ui.offset = Math.max(0, ui.offset - PAGE); refreshDevices().catch(report);
  });
  $('next').addEventListener('click', () => {
    ui.offset += PAGE; refreshDevices().catch(report);
  });
  refreshAll().then(() => document.body.dataset.ready = '1').catch(report);
  connect();
}

init();
