/* app.js -- shoal's web UI: a read-only dashboard over the agent's /v1 API.
 *
 * Live state comes from blocking queries: GET /v1/cluster?index=I&wait=D
 * (members and per-service counts) and, on a service's page,
 * GET /v1/instances/NAME?all=1&index=I&wait=D. Each answer is rendered and
 * the next query sent at once, so a change shows as soon as the agent knows
 * it. /v1/info (counters) is read every 5 s and about a second after a change.
 *
 * Everything the agent says is untrusted (instance metadata comes from any
 * registering client): the page builds nodes with textContent and
 * attributes only, never HTML from data; the agent's CSP forbids inline
 * script besides. Tables render one page of rows at a time, so 10,000
 * instances cost one filter pass and PAGE rows of DOM.
 */
'use strict';

const PAGE = 100;            // rows per table page
const WAIT = '30s';          // blocking query wait
const INFO_EVERY_MS = 5000;  // /v1/info poll
const HISTORY_MAX = 120;     // samples of the history chart (10 min at 5 s)
const TOKEN_KEY = 'shoal-token';

const $ = (id) => document.getElementById(id);

/* el('td', {className: 'x', title: t}, child...) -- strings become text nodes. */
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null) continue;
      if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e[k] = v;
    }
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmtAgo(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min ago';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h ago';
}

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return d + 'd ' + h + 'h ' + m + 'm';
  if (h) return h + 'h ' + m + 'm ' + (s % 60) + 's';
  if (m) return m + 'm ' + (s % 60) + 's';
  return (s % 60) + 's';
}

const str = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const STATUSES = new Set(['alive', 'suspect', 'dead', 'left', 'passing', 'warning', 'critical']);
const cls = (s) => (STATUSES.has(s) ? s : 'unknown');  // only known words become class names

/* ------------------------------------------------------------- fetching */

let tokenPrompt = null;

function askToken(message) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dlg = $('token-dialog'), form = $('token-form'), input = $('token-input');
    $('token-error').textContent = message || '';
    dlg.hidden = false;
    input.value = '';
    input.focus();
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      dlg.hidden = true;
      tokenPrompt = null;
      resolve();
    };
  });
  return tokenPrompt;
}

/* GET path as JSON; on 401 asks for the token (once for all callers) and
 * retries. Throws on network errors and other statuses. */
async function api(path, signal) {
  for (;;) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(path, { headers, signal, cache: 'no-store' });
    if (r.status === 401) {
      await askToken(token ? 'That token was refused.' : '');
      continue;
    }
    if (!r.ok) {
      let msg = 'HTTP ' + r.status;
      try { const j = await r.json(); if (j && typeof j.error === 'string') msg += ': ' + j.error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

function setLive(ok, text) {
  const l = $('live');
  l.className = 'live ' + (ok ? 'on' : 'off');
  l.textContent = text;
}

/* ---------------------------------------------------------------- state */

const state = {
  cluster: null,      // last /v1/cluster answer
  clusterAt: 0,       // performance.now() when it arrived
  info: null,         // last /v1/info answer
  history: [],        // {t, alive, instances, passing}
  service: null,      // {name, index, instances, at}
  page: 'overview',
  pages: { members: 0, services: 0, overview: 0, instances: 0 },
  openRaw: new Set(), // instance keys whose raw JSON is shown
};

/* --------------------------------------------------------------- tables */

/* Renders rows[page*PAGE ..] into tbody with makeRow, and a pager. */
function renderPaged(tbody, pager, rows, key, makeRow, emptyText) {
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  let p = Math.min(state.pages[key] || 0, pages - 1);
  state.pages[key] = p;
  clear(tbody);
  const cols = tbody.parentNode.querySelectorAll('thead th').length;
  if (!rows.length) tbody.appendChild(el('tr', null, el('td', { colSpan: cols, className: 'empty' }, emptyText)));
  const frag = document.createDocumentFragment();
  for (const r of rows.slice(p * PAGE, (p + 1) * PAGE)) frag.appendChild(makeRow(r));
  tbody.appendChild(frag);
  clear(pager);
  if (pages > 1) {
    const go = (np) => { state.pages[key] = np; render(); };
    pager.append(
      el('button', { type: 'button', disabled: p === 0, onclick: () => go(p - 1) }, '‹ prev'),
      el('span', null, 'rows ' + (p * PAGE + 1) + '–' + Math.min(rows.length, (p + 1) * PAGE) +
        ' of ' + rows.length + ' (page ' + (p + 1) + ' of ' + pages + ')'),
      el('button', { type: 'button', disabled: p >= pages - 1, onclick: () => go(p + 1) }, 'next ›'));
  }
}

function healthBar(s) {
  const t = s.total || 1;
  const seg = (c, n) => {
    const e = el('span', { className: c });
    e.style.width = (100 * (n || 0) / t).toFixed(2) + '%';  // CSSOM: allowed by the CSP, unlike style=""
    return e;
  };
  return el('div', { className: 'bar', title: s.passing + ' passing, ' + s.warning + ' warning, ' + s.critical + ' critical' },
    seg('p', s.passing), seg('w', s.warning), seg('c', s.critical));
}

function serviceRow(s, withServed) {
  const tr = el('tr', { className: 'click', dataset: { service: str(s.name) },
    onclick: () => { location.hash = '#/service/' + encodeURIComponent(s.name); } },
  el('td', null, el('a', { href: '#/service/' + encodeURIComponent(s.name) }, str(s.name))),
  el('td', { className: 'num' }, str(s.passing)),
  el('td', { className: 'num' }, str(s.warning)),
  el('td', { className: 'num' }, str(s.critical)),
  el('td', { className: 'num' }, str(s.total)));
  if (withServed) tr.appendChild(el('td', { className: 'num' }, str(s.served)));
  tr.appendChild(el('td', null, healthBar(s)));
  return tr;
}

/* ------------------------------------------------------------- overview */

function memberCounts() {
  const c = { alive: 0, suspect: 0, dead: 0, left: 0 };
  for (const m of (state.cluster ? state.cluster.members : [])) if (m.status in c) c[m.status]++;
  return c;
}

function instanceCounts() {
  const c = { passing: 0, warning: 0, critical: 0 };
  for (const s of (state.cluster ? state.cluster.services : [])) {
    c.passing += s.passing || 0; c.warning += s.warning || 0; c.critical += s.critical || 0;
  }
  return c;
}

/* Numeric leaves of /v1/info whose path names a drop, refusal or conflict:
 * whatever counters this agent's version exposes. */
function dropCounters(info) {
  const out = [];
  const want = /drop|refus|reject|conflict|invalid|replay|bad_|not_endorsed|unsigned|too_large|truncat|error/i;
  const walk = (o, path, hit) => {
    if (out.length > 400) return;
    for (const [k, v] of Object.entries(o)) {
      const p = path ? path + '.' + k : k;
      const h = hit || want.test(k);
      if (typeof v === 'number' && h) out.push([p, v]);
      else if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, p, h);
    }
  };
  if (info && typeof info === 'object') walk(info, '', false);
  out.sort((a, b) => (b[1] > 0) - (a[1] > 0) || a[0].localeCompare(b[0]));
  return out;
}

function renderAgent() {
  const info = state.info || {};
  const c = state.cluster;
  const name = str(info.name || (c && c.self));
  $('agent-name').textContent = name ? 'agent ' + name : '';
  document.title = name ? 'shoal · ' + name : 'shoal';
  const dl = clear($('agent-facts'));
  const add = (k, v) => { if (v !== undefined && v !== null && v !== '') dl.append(el('dt', null, k), el('dd', null, str(v))); };
  add('name', name);
  add('version', info.version !== undefined ? str(info.version) + (info.build ? ' (' + str(info.build) + ')' : '') : '–');
  add('uptime', typeof info.uptime_s === 'number' ? fmtDuration(info.uptime_s) : '–');
  const a = info.addresses && typeof info.addresses === 'object' ? info.addresses : {};
  add('gossip', a.bind || info.addr);
  add('http', a.http || location.host);
  add('dns', a.dns);
  add('generation', info.generation);
  add('incarnation', info.incarnation);
  add('health score', info.health);
  if (info.registry && info.registry.own !== undefined) add('own instances', info.registry.own);
}

function renderGrid() {
  const g = clear($('member-grid'));
  const self = state.cluster ? state.cluster.self : '';
  const frag = document.createDocumentFragment();
  for (const m of (state.cluster ? state.cluster.members : []).slice(0, 5000)) {
    frag.appendChild(el('span', {
      className: 'm ' + cls(m.status) + (m.name === self ? ' self' : ''),
      title: str(m.name) + ' · ' + str(m.status) + ' · ' + str(m.addr),
      dataset: { name: str(m.name), status: cls(m.status) },
    }));
  }
  g.appendChild(frag);
}

const SVG = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function renderHistory() {
  const box = clear($('history'));
  const h = state.history, W = 300, H = 90, pad = 4;
  const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img' });
  const max = Math.max(1, ...h.map((s) => Math.max(s.alive, s.instances, s.passing)));
  const now = performance.now();
  // the x axis spans what we have seen, from one minute up to ten
  const span = Math.min(HISTORY_MAX * INFO_EVERY_MS, Math.max(60000, h.length ? now - h[0].t : 0));
  const x = (t) => Math.max(0, W - (now - t) / span * W);
  const y = (v) => H - pad - v / max * (H - 2 * pad - 12);
  for (const key of ['instances', 'passing', 'alive']) {
    if (!h.length) break;
    const pts = [];
    h.forEach((s, i) => {  // steps: a count holds until the next sample
      if (i) pts.push(x(s.t).toFixed(1) + ',' + y(h[i - 1][key]).toFixed(1));
      pts.push(x(s.t).toFixed(1) + ',' + y(s[key]).toFixed(1));
    });
    pts.push(W + ',' + y(h[h.length - 1][key]).toFixed(1));
    svg.appendChild(svgEl('polyline', { points: pts.join(' '), class: key === 'alive' ? 'members' : key }));
  }
  const label = svgEl('text', { x: 4, y: 11 });
  label.textContent = 'max ' + max + ' · last ' + Math.round(span / 1000) + ' s';
  svg.appendChild(label);
  box.appendChild(svg);
}

function sampleHistory() {
  if (!state.cluster) return;
  const m = memberCounts(), i = instanceCounts();
  const last = state.history[state.history.length - 1];
  // a burst of changes makes one sample per second at most
  if (last && performance.now() - last.t < 1000) state.history.pop();
  state.history.push({ t: performance.now(), alive: m.alive, instances: i.passing + i.warning + i.critical, passing: i.passing });
  if (state.history.length > HISTORY_MAX) state.history.shift();
}

/* performance marks for scripts/bench_ui.py: the first render with data */
const marked = new Set();
function markOnce(name) {
  if (marked.has(name)) return;
  marked.add(name);
  if (!performance.mark) return;
  performance.mark(name);  // the DOM is built; the frame after it has been painted:
  requestAnimationFrame(() => setTimeout(() => performance.mark(name + ':painted'), 0));
}

function renderOverview() {
  renderAgent();
  const m = memberCounts(), i = instanceCounts();
  for (const k of Object.keys(m)) $('count-' + k).textContent = state.cluster ? m[k] : '–';
  for (const k of Object.keys(i)) $('count-' + k).textContent = state.cluster ? i[k] : '–';
  $('count-services').textContent = state.cluster ? state.cluster.services.length : '–';
  renderGrid();
  renderHistory();
  const svcs = state.cluster ? state.cluster.services : [];
  renderPaged($('overview-services').tBodies[0], $('overview-services-pager'), svcs, 'overview',
    (s) => serviceRow(s, false), 'no services registered yet');
  const dl = clear($('counters'));
  const cs = dropCounters(state.info);
  const nz = cs.filter(([, v]) => v > 0), zero = cs.filter(([, v]) => !(v > 0));
  if (!cs.length) dl.append(el('dt', null, state.info ? 'none exposed' : 'loading…'), el('dd'));
  else if (!nz.length) dl.append(el('dt', { className: 'allzero' }, 'all ' + cs.length + ' counters are 0'), el('dd'));
  for (const [k, v] of nz) dl.append(el('dt', null, k), el('dd', { className: 'nonzero' }, String(v)));
  const zeros = $('counters-zero');
  const wasOpen = zeros.open;
  clear(zeros).appendChild(el('summary', null, zero.length + ' counters at 0'));
  const zl = el('dl', { className: 'counters' });
  for (const [k, v] of zero) zl.append(el('dt', null, k), el('dd', null, String(v)));
  zeros.appendChild(zl);
  zeros.open = wasOpen;
  zeros.hidden = !zero.length;
  if (state.cluster) markOnce('shoal:overview');
}

/* -------------------------------------------------------------- members */

function renderMembers() {
  const name = $('member-filter-name').value.trim().toLowerCase();
  const status = $('member-filter-status').value;
  const all = state.cluster ? state.cluster.members.slice() : [];
  all.sort((a, b) => str(a.name).localeCompare(str(b.name)));
  const rows = all.filter((m) => (!name || str(m.name).toLowerCase().includes(name)) && (!status || m.status === status));
  const elapsed = performance.now() - state.clusterAt;
  const c = memberCounts();
  $('members-summary').textContent = rows.length + ' of ' + all.length + ' members · ' +
    c.alive + ' alive, ' + c.suspect + ' suspect, ' + c.dead + ' dead, ' + c.left + ' left';
  renderPaged($('members-table').tBodies[0], $('members-pager'), rows, 'members', (m) => el('tr',
    { className: cls(m.status), dataset: { name: str(m.name), status: cls(m.status) } },
    el('td', { className: 'nowrap' }, str(m.name)),
    el('td', { className: 'nowrap' }, str(m.addr)),
    el('td', { className: 'status' }, el('span', { className: 'badge ' + cls(m.status) }, str(m.status))),
    el('td', { className: 'num' }, str(m.incarnation)),
    el('td', { className: 'num' }, str(m.generation)),
    el('td', { className: 'ago' }, fmtAgo((m.changed_ms_ago || 0) + elapsed))),
  state.cluster ? 'no member matches' : 'loading…');
}

/* ------------------------------------------------------------- services */

function renderServices() {
  const name = $('service-filter-name').value.trim().toLowerCase();
  const all = state.cluster ? state.cluster.services : [];
  const rows = all.filter((s) => !name || str(s.name).includes(name));
  $('services-summary').textContent = rows.length + ' of ' + all.length + ' services';
  renderPaged($('services-table').tBodies[0], $('services-pager'), rows, 'services',
    (s) => serviceRow(s, true), state.cluster ? 'no service matches' : 'loading…');
}

function instKey(i) { return str(i.owner) + '/' + str(i.id); }

function metaCell(meta) {
  const td = el('td', { className: 'meta-cell' });
  if (!meta || typeof meta !== 'object') return td;
  const keys = Object.keys(meta).sort();
  if (!keys.length) return td;
  const box = el('div', { className: 'meta' });
  for (const k of keys) box.append(el('b', null, k + '='), str(meta[k]), '\n');
  td.appendChild(box);
  return td;
}

function checksCell(checks) {
  const td = el('td', { className: 'checks' });
  for (const c of Array.isArray(checks) ? checks : []) {
    td.appendChild(el('div', { className: 'check' },
      el('span', { className: 'badge ' + cls(c.status) }, str(c.status)), ' ',
      str(c.kind) + ' ' + str(c.target),
      c.output ? el('div', { className: 'out' }, str(c.output)) : null));
  }
  return td;
}

function instanceRow(i) {
  const key = instKey(i);
  const owner = el('td', null, str(i.owner));
  if (i.owner_status && i.owner_status !== 'alive')
    owner.append(' ', el('span', { className: 'owner-off' }, '(' + str(i.owner_status) + ')'));
  const raw = el('td', null, el('button', {
    type: 'button', className: 'link',
    onclick: () => { if (state.openRaw.has(key)) state.openRaw.delete(key); else state.openRaw.add(key); render(); },
  }, state.openRaw.has(key) ? 'hide JSON' : 'JSON'));
  if (state.openRaw.has(key)) raw.appendChild(el('pre', { className: 'raw' }, JSON.stringify(i, null, 2)));
  const addr = str(i.address).includes(':') ? '[' + str(i.address) + ']:' + str(i.port) : str(i.address) + ':' + str(i.port);
  return el('tr', { className: cls(i.status), dataset: { id: str(i.id), owner: str(i.owner), status: cls(i.status) } },
    el('td', { className: 'nowrap' }, str(i.id)),
    el('td', { className: 'nowrap' }, addr),
    el('td', { className: 'status' }, el('span', { className: 'badge ' + cls(i.status) }, str(i.status))),
    owner,
    el('td', { className: 'tags' }, ...(Array.isArray(i.tags) ? i.tags : []).map((t) => el('span', { className: 'chip' }, str(t)))),
    metaCell(i.meta),
    checksCell(i.checks),
    raw);
}

function renderService() {
  const sv = state.service;
  if (!sv) return;
  $('service-name').textContent = sv.name;
  $('service-raw').href = '/v1/instances/' + encodeURIComponent(sv.name) + '?all=1';
  const tag = $('instance-filter-tag').value.trim();
  const status = $('instance-filter-status').value;
  const all = sv.instances || [];
  const rows = all.filter((i) => (!status || i.status === status) &&
    (!tag || (Array.isArray(i.tags) && i.tags.includes(tag))));
  $('instances-summary').textContent = sv.instances ? rows.length + ' of ' + all.length + ' instances' : 'loading…';
  renderPaged($('instances-table').tBodies[0], $('instances-pager'), rows, 'instances', instanceRow,
    sv.error ? sv.error : sv.instances ? (all.length ? 'no instance matches' : 'no instances of this service (yet)') : 'loading…');
  if (sv.instances) markOnce('shoal:instances');
}

/* ------------------------------------------------------------ live loops */

async function clusterLoop() {
  let index = 0, backoff = 500;
  for (;;) {
    try {
      const q = index ? '?index=' + index + '&wait=' + WAIT : '';
      const c = await api('/v1/cluster' + q);
      if (!c || !Array.isArray(c.members) || !Array.isArray(c.services)) throw new Error('unexpected answer');
      const first = !state.cluster;
      state.cluster = c;
      state.clusterAt = performance.now();
      index = typeof c.index === 'number' ? c.index : 0;
      backoff = 500;
      setLive(true, 'live');
      sampleHistory();
      infoSoon(first ? 0 : 1000);
      if (state.page === 'service') renderAgent();  // its rows follow their own query
      else render();
    } catch (e) {
      setLive(false, 'agent unreachable, retrying');
      index = 0;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

let infoTimer = null;
/* Reads /v1/info after a change, at most once per `ms`. */
function infoSoon(ms) {
  if (infoTimer === null) infoTimer = setTimeout(() => { infoTimer = null; refreshInfo(); }, ms);
}

async function refreshInfo() {
  try {
    state.info = await api('/v1/info');
    if (state.page === 'overview') render();
  } catch (e) { /* the cluster loop shows the agent's state */ }
}

async function infoLoop() {
  for (;;) {
    await sleep(INFO_EVERY_MS);
    sampleHistory();
    await refreshInfo();
  }
}

let serviceAbort = null;

/* Follows one service's instances (all of them: every status and owner)
 * until the page changes. */
async function serviceLoop(name) {
  if (serviceAbort) serviceAbort.abort();
  const ctl = new AbortController();
  serviceAbort = ctl;
  state.service = { name, instances: null, error: null };
  state.pages.instances = 0;
  state.openRaw.clear();
  render();
  let index = 0, backoff = 500;
  while (!ctl.signal.aborted) {
    try {
      const q = '/v1/instances/' + encodeURIComponent(name) + '?all=1' + (index ? '&index=' + index + '&wait=' + WAIT : '');
      const r = await api(q, ctl.signal);
      if (ctl.signal.aborted) return;
      if (!r || !Array.isArray(r.instances)) throw new Error('unexpected answer');
      state.service = { name, instances: r.instances, error: null };
      index = typeof r.index === 'number' ? r.index : 0;
      backoff = 500;
      render();
    } catch (e) {
      if (ctl.signal.aborted) return;
      state.service.error = String(e.message || e);
      if (/HTTP 4/.test(state.service.error)) { render(); return; }  // a bad name: do not retry
      index = 0;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

/* --------------------------------------------------------------- routing */

function route() {
  const h = location.hash.replace(/^#\/?/, '');
  let page = 'overview', arg = null;
  if (h.startsWith('service/')) {
    page = 'service';
    try { arg = decodeURIComponent(h.slice(8)); } catch (e) { arg = h.slice(8); }
  } else if (h === 'members' || h === 'services' || h === 'overview') {
    page = h;
  }
  state.page = page;
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== 'page-' + page;
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle('active', a.dataset.page === page || (page === 'service' && a.dataset.page === 'services'));
  if (page === 'service') {
    if (!state.service || state.service.name !== arg) serviceLoop(arg);
  } else if (serviceAbort) {
    serviceAbort.abort();
    serviceAbort = null;
    state.service = null;
  }
  render();
}

function render() {
  renderAgent();
  if (state.page === 'overview') renderOverview();
  else if (state.page === 'members') renderMembers();
  else if (state.page === 'services') renderServices();
  else if (state.page === 'service') renderService();
}

function start() {
  window.addEventListener('hashchange', route);
  const refilter = (key) => () => { state.pages[key] = 0; render(); };
  $('member-filter-name').addEventListener('input', refilter('members'));
  $('member-filter-status').addEventListener('change', refilter('members'));
  $('service-filter-name').addEventListener('input', refilter('services'));
  $('instance-filter-tag').addEventListener('input', refilter('instances'));
  $('instance-filter-status').addEventListener('change', refilter('instances'));
  // "last change" keeps counting between answers
  setInterval(() => { if (state.page === 'members') renderMembers(); }, 1000);
  route();
  clusterLoop();
  infoLoop();
}

document.addEventListener('DOMContentLoaded', start);
