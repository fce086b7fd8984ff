// Lifeline dashboard: signs in with an API token (sessionStorage), follows
// the cluster through the API's server-sent events (read with fetch, so the
// token travels in the Authorization header, never in a URL) and calls the
// API for every action. The API checks every role; the page only disables
// what the token may not do.
'use strict';
(() => {
  const KEY = 'lifeline.token';
  const RANK = {viewer: 1, operator: 2, approver: 3};
  const COLORS = ['#0b5cad', '#c2410c', '#15803d', '#7c3aed', '#be185d', '#0e7490', '#a16207', '#4b5563'];
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY) || '';
  let me = null, ev = null, stream = null, lagTimer = 0, lastEvent = 0;

  // h builds an element: h('td', {class: 'x'}, 'text', child...).
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const svg = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  const fill = (el, ...kids) => { el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined)); };
  const secs = (s) => (s === undefined || s === null || s < 0) ? '-' : s < 10 ? s.toFixed(2) + 's' : s < 600 ? s.toFixed(0) + 's' : (s / 60).toFixed(0) + 'm';
  const bytes = (n) => n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + ' GiB' : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B';
  const when = (t) => { if (!t || t.startsWith('0001')) return '-'; const d = new Date(t); return d.toLocaleString(); };
  const ago = (t) => { if (!t || t.startsWith('0001')) return '-'; return secs((Date.now() - new Date(t)) / 1000) + ' ago'; };
  const may = (role) => me && RANK[me.role] >= RANK[role];

  async function api(method, path, body) {
    const opts = {method, headers: {Authorization: 'Bearer ' + token}};
    if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
    const r = await fetch('/api/v1' + path, opts);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!r.ok) {
      const e = new Error((data && data.error) || r.status + ' ' + r.statusText);
      e.status = r.status; e.body = data;
      throw e;
    }
    return data;
  }

  function showLogin(msg) {
    $('main').hidden = true; $('login').hidden = false; $('signout').hidden = true;
    $('whoami').textContent = ''; $('loginerr').textContent = msg || '';
    setConn('off', 'signed out');
  }

  // signIn checks the token while the event stream and the lag history
  // already load (one round trip less on the first load).
  async function signIn(t) {
    token = t.trim();
    const who = api('GET', '/whoami');
    follow();
    loadLag();
    try {
      me = await who;
    } catch (e) {
      me = null;
      if (stream) stream.abort();
      showLogin(e.status === 401 ? 'That token is not valid (unknown or revoked).' : 'Cannot reach the API: ' + e.message);
      return;
    }
    sessionStorage.setItem(KEY, token);
    $('login').hidden = true; $('main').hidden = false; $('signout').hidden = false;
    $('whoami').textContent = me.name + ' (' + me.role + ')';
    applyRoles();
    clearInterval(lagTimer);
    lagTimer = setInterval(loadLag, 10000);
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    token = ''; me = null;
    if (stream) stream.abort();
    clearInterval(lagTimer);
    showLogin('');
  }

  // applyRoles disables every control the token's role may not use.
  function applyRoles() {
    document.querySelectorAll('[data-role]').forEach((b) => {
      const need = b.getAttribute('data-role');
      const ok = may(need);
      b.disabled = !ok || b.hasAttribute('data-busy');
      b.title = ok ? '' : 'needs the ' + need + ' role (this token is ' + (me ? me.role : 'none') + ')';
    });
  }

  function setConn(cls, text) { const c = $('conn'); c.className = 'conn ' + cls; c.textContent = text; }

  // follow reads the event stream until it ends, then tries again.
  async function follow() {
    if (stream) stream.abort();
    const ctl = new AbortController();
    stream = ctl;
    let delay = 1000;
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch('/api/v1/events', {headers: {Authorization: 'Bearer ' + token}, signal: ctl.signal});
        if (r.status === 401) { if (me) showLogin('The token is no longer valid.'); return; }
        if (!r.ok || !r.body) throw new Error('events: ' + r.status);
        setConn('', 'live');
        delay = 1000;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += dec.decode(value, {stream: true});
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (data) onEvent(JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      setConn('bad', 'reconnecting');
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  function onEvent(e) {
    if (!ev) performance.mark('first-event');
    ev = e; lastEvent = Date.now();
    try {
      render();
    } catch (err) {
      $('answered').textContent = 'render: ' + err.message;
    }
  }

  function render() {
    const st = ev.status || {workloads: []};
    $('cluster').textContent = '— ' + (st.name || '');
    const stale = ev.error ? ' · STALE: ' + ev.error : '';
    $('answered').textContent = 'from ' + ev.node + ' at ' + new Date(ev.at).toLocaleTimeString() + stale;
    if (ev.error) setConn('off', 'stale'); else setConn('', 'live');
    renderApproval(st);
    renderWorkloads(st);
    renderMap(st);
    renderBackups(st);
    renderAlarms();
    renderRunbooks();
    renderGamedays();
    applyRoles();
  }

  // waiting returns the runbook that waits at its approval gate, if any.
  function waiting(st) {
    for (const w of st.workloads) {
      if (w.phase === 'waiting-approval' && w.runbook) {
        const rb = (ev.runbooks || []).find((r) => r.id === w.runbook);
        return {w, rb};
      }
    }
    return null;
  }

  function renderApproval(st) {
    const p = $('approval');
    const wait = waiting(st);
    p.hidden = !wait;
    if (!wait) return;
    p.dataset.runbook = wait.w.runbook;
    const rb = wait.rb || {};
    const evd = rb.evidence || null;
    const to = rb.params ? rb.params.to_region : '?';
    fill($('approval-summary'), 'Workload ', h('b', null, wait.w.name), ': runbook ', h('code', null, wait.w.runbook),
      ' would fail over from ', h('b', null, (rb.params && rb.params.from_region) || wait.w.active), ' to ', h('b', null, to), '.',
      evd && evd.seen && evd.seen.length ? ' Seen down by: ' + evd.seen.join('; ') + '.' : '');
    const rows = (evd && evd.standbys ? evd.standbys : []).map((s) => h('tr', null, h('td', null, s.node), h('td', null, s.receive_lsn || '-'),
      h('td', null, s.replay_lsn || '-'), h('td', null, bytes(s.lag_bytes || 0) + ' / ' + secs(s.lag_seconds)), h('td', null, ago(s.reported))));
    fill($('evidence').tBodies[0], rows.length ? rows : h('tr', null, h('td', {colspan: 5}, 'no evidence recorded yet')));
    const loss = evd ? (evd.estimated_loss_seconds < 0 ? 'unknown (the primary\'s last position was not seen)' : secs(evd.estimated_loss_seconds) + ', ' + bytes(evd.estimated_loss_bytes)) : '-';
    fill($('approval-loss'), 'Estimated loss: ', h('b', null, loss), ' (RPO ', secs(wait.w.rpo_seconds), ').');
  }

  async function decide(approve) {
    const id = $('approval').dataset.runbook;
    if (!id || !may('approver')) return;
    const b = $(approve ? 'approve' : 'reject');
    b.setAttribute('data-busy', ''); applyRoles();
    $('approval-msg').textContent = (approve ? 'approving ' : 'rejecting ') + id + '…';
    try {
      const r = await api('POST', '/runbooks/' + encodeURIComponent(id) + (approve ? '/approve' : '/reject'), {reason: $('reason').value});
      $('approval-msg').textContent = (approve ? 'approved' : 'rejected') + ' by ' + r.approval.by + ' at ' + when(r.approval.at);
    } catch (e) {
      $('approval-msg').textContent = e.message + (e.body && e.body.reasons ? '\n' + e.body.reasons.join('\n') : '');
    } finally {
      b.removeAttribute('data-busy'); applyRoles();
    }
  }

  function renderWorkloads(st) {
    const parts = [h('h2', null, 'Workloads ', h('small', null, 'controller: ' + (st.controller || 'none (election)')))];
    for (const w of st.workloads) {
      const rb = w.runbook ? ' · runbook ' + w.runbook + ' (' + w.runbook_kind + ')' : '';
      parts.push(h('dl', {class: 'kv', 'data-workload': w.name},
        h('dt', null, 'workload'), h('dd', null, h('b', null, w.name), ' · ', w.strategy, ' · failover ', w.failover),
        h('dt', null, 'writes go to'), h('dd', null, h('b', null, w.active || '-'), ' · primary ', w.primary || '-', ' (epoch ', w.epoch, ') · lease ', w.lease_holder || 'none'),
        h('dt', null, 'phase'), h('dd', {class: w.phase === 'steady' ? '' : 'st-running'}, w.phase || '-', rb),
        h('dt', null, 'objectives'), h('dd', null, 'RPO ', secs(w.rpo_seconds), ' · RTO ', secs(w.rto_seconds)),
        h('dt', null, 'writer endpoint'), h('dd', null, h('code', null, w.writer)),
        h('dt', null, 'reader endpoint'), h('dd', null, h('code', null, w.reader)),
        h('dt', null, 'HTTP · DNS'), h('dd', null, h('code', null, w.http), ' · ', h('code', null, w.dns)),
        w.fenced && w.fenced.length ? [h('dt', null, 'fenced'), h('dd', {class: 'err'}, w.fenced.join(', '))] : null,
        w.last_failover ? [h('dt', null, 'last failover'), h('dd', null, w.last_failover.kind, ' ', w.last_failover.from, ' → ', w.last_failover.to, ' in ', secs(w.last_failover.seconds), ', ', when(w.last_failover.started))] : null));
    }
    fill($('workloads'), parts);
  }

  function renderMap(st) {
    const topo = ev.topology || {regions: []};
    const lagBy = {};
    for (const l of ev.lag || []) lagBy[l.workload + '|' + l.node] = l;
    const routing = {};
    for (const r of ev.routing || []) routing[r.workload + '|' + r.region] = r;
    const w = st.workloads[0];
    const nodes = {};
    if (w) for (const n of w.nodes) nodes[n.region + '/' + n.zone] = n;
    const cards = topo.regions.map((reg) => {
      const ctl = w ? routing[w.name + '|' + reg.name] : null;
      const fenced = w && w.fenced && w.fenced.includes(reg.name);
      const head = h('h3', null, reg.name,
        w && w.active === reg.name ? h('span', {class: 'tag act'}, 'active') : null,
        fenced ? h('span', {class: 'tag off'}, 'fenced') : null,
        ctl ? h('span', {class: 'tag ' + (ctl.on ? 'on' : 'off'), title: ctl.actor ? 'by ' + ctl.actor + (ctl.reason ? ': ' + ctl.reason : '') : 'never changed'}, 'routing ' + (ctl.on ? 'on' : 'off')) : null,
        ctl ? h('button', {type: 'button', 'data-role': 'operator', class: 'routing', onclick: () => setRouting(w.name, reg.name, !ctl.on)}, ctl.on ? 'switch off' : 'switch on') : null);
      const zs = reg.zones.map((z) => {
        const id = reg.name + '/' + z.name;
        const n = nodes[id];
        const role = n ? n.role : 'none';
        const l = w ? lagBy[w.name + '|' + id] : null;
        const detail = n ? [z.address + ':' + n.port, n.lsn ? ' · LSN ' + n.lsn : '', l ? ' · lag ' + bytes(l.bytes) + ', ' + secs(l.seconds) + (l.connected ? '' : ' (not streaming)') : '', n.error ? ' · ' + n.error : ''].join('') : z.address + ' · no database';
        return h('div', {class: 'node ' + role, 'data-node': id, 'data-role-name': role},
          h('span', {class: 'name'}, h('span', {class: 'dot' + (n && n.healthy ? ' ok' : '')}), id),
          h('span', {class: 'role'}, role),
          h('span', {class: 'detail'}, detail));
      });
      return h('div', {class: 'region' + (fenced ? ' fenced' : '') + (w && w.active === reg.name ? ' active' : '')}, head, zs);
    });
    if (topo.witness) cards.push(h('div', {class: 'region witness'}, h('h3', null, 'witness'), h('div', {class: 'node'}, h('span', {class: 'name'}, topo.witness), h('span', {class: 'role'}, 'votes'), h('span', {class: 'detail'}, 'router ' + (topo.router || '-')))));
    fill($('map'), cards);
  }

  async function setRouting(workload, region, on) {
    try {
      await api('PUT', '/workloads/' + encodeURIComponent(workload) + '/routing/' + encodeURIComponent(region), {on});
      $('answered').textContent = 'routing: ' + region + ' ' + (on ? 'on' : 'off');
    } catch (e) {
      $('answered').textContent = 'routing: ' + e.message;
    }
  }

  function renderBackups(st) {
    const parts = st.workloads.map((w) => {
      const b = w.backups || {};
      const l = b.last, v = b.verify;
      return h('dl', {class: 'kv'},
        h('dt', null, 'last backup'), h('dd', {class: l && l.error ? 'err' : ''}, l ? (l.error ? 'FAILED ' + ago(l.at) + ': ' + l.error : l.id + ' from ' + l.node + ', ' + bytes(l.bytes) + ' in ' + secs(l.seconds) + ', ' + ago(l.at)) : 'none yet'),
        h('dt', null, 'last drill'), h('dd', {class: v && !v.passed ? 'err' : ''}, v ? (v.passed ? 'passed' : 'FAILED: ' + v.failure) + ', ' + secs(v.total_seconds) + ' (RTO ' + secs(v.rto_seconds) + '), ' + ago(v.at) : 'none yet'),
        (b.copies || []).map((c) => [h('dt', null, 'copy → ' + c.region), h('dd', {class: c.error ? 'err' : ''}, 'lag ' + secs(c.lag_seconds) + (c.newest_wal ? ', WAL ' + c.newest_wal : '') + (c.error ? ' · ' + c.error : ''))]));
    });
    fill($('backups'), parts);
  }

  async function backupAction(verify) {
    const w = ev && ev.status && ev.status.workloads[0];
    if (!w) return;
    const b = $(verify ? 'verify' : 'backup-now');
    b.setAttribute('data-busy', ''); applyRoles();
    $('backup-msg').textContent = verify ? 'restoring the latest backup in a scratch directory…' : 'taking a base backup…';
    try {
      const r = await api('POST', '/workloads/' + encodeURIComponent(w.name) + (verify ? '/backups/verify' : '/backups'));
      $('backup-msg').textContent = verify ? (r.passed ? 'drill passed' : 'drill FAILED: ' + r.failure) : 'backup ' + r.id + ' taken';
    } catch (e) {
      $('backup-msg').textContent = e.message;
    } finally {
      b.removeAttribute('data-busy'); applyRoles();
    }
  }

  function renderAlarms() {
    const as = ev.alarms || [];
    fill($('alarms'), as.length ? as.map((a) => h('li', null, h('span', {class: 'sev-' + a.severity}, a.severity), ' ', a.kind, ' · ', a.workload, ' · ', ago(a.raised),
      a.cleared && !a.cleared.startsWith('0001') ? ' · cleared ' + ago(a.cleared) : h('b', {class: 'err'}, ' · ACTIVE'), h('br'), a.summary)) : h('li', null, 'no alarms'));
  }

  function renderRunbooks() {
    const rbs = ev.runbooks || [];
    const open = new Set([...document.querySelectorAll('#runbooks details[open]')].map((d) => d.dataset.id));
    fill($('runbooks'), rbs.length ? rbs.slice(0, 10).map((rb, i) => {
      const secsTotal = ((rb.finished && !rb.finished.startsWith('0001') ? new Date(rb.finished) : new Date(rb.updated)) - new Date(rb.created)) / 1000;
      return h('details', {class: 'rb', 'data-id': rb.id, open: rb.state === 'running' || open.has(rb.id) || (i === 0 && open.size === 0) ? true : null},
        h('summary', null, h('span', {class: 'st-' + rb.state}, rb.state), ' ', rb.kind, ' · ', rb.workload, ' · ', when(rb.created), ' · ', secs(secsTotal), rb.started_by ? ' · by ' + rb.started_by : ''),
        h('table', null, h('thead', null, h('tr', null, h('th', null, 'step'), h('th', null, 'state'), h('th', null, 'seconds'), h('th', null, 'note'))),
          h('tbody', null, (rb.steps || []).map((s) => h('tr', {'data-step': s.name}, h('td', null, s.name), h('td', {class: 'st-' + s.state}, s.state),
            h('td', null, s.state === 'pending' ? '' : s.seconds.toFixed(2)), h('td', null, (s.note || '') + (s.error ? ' ' + s.error : '')))))),
        rb.error ? h('p', {class: 'err'}, rb.error) : null,
        rb.approval ? h('p', null, (rb.approval.approve ? 'approved' : 'rejected') + ' by ' + rb.approval.by + ' at ' + when(rb.approval.at)) : null);
    }) : h('p', null, 'no runbooks yet'));
  }

  function renderGamedays() {
    const g = ev.gamedays;
    if (!g || !g.length) { fill($('gamedays'), h('p', null, ev.gamedays_note || 'no game days yet')); return; }
    fill($('gamedays'), h('table', null, h('thead', null, h('tr', null, ['started', 'scenario', 'strategy', 'result', 'lost writes', 'RPO', 'RTO', 'report'].map((t) => h('th', null, t)))),
      h('tbody', null, g.map((d) => h('tr', null, h('td', null, when(d.started)), h('td', null, d.scenario), h('td', null, d.strategy || '-'),
        h('td', {class: d.passed ? 'st-succeeded' : 'st-failed'}, d.passed ? 'passed' : 'failed'), h('td', null, d.lost_writes),
        h('td', null, secs(d.rpo_seconds)), h('td', null, d.rto_seconds === null ? '-' : secs(d.rto_seconds)),
        h('td', null, h('button', {type: 'button', onclick: () => report(d.id)}, 'download')))))));
  }

  async function report(id) {
    try {
      const r = await fetch('/api/v1/gamedays/' + encodeURIComponent(id) + '/report', {headers: {Authorization: 'Bearer ' + token}});
      if (!r.ok) throw new Error(r.status + ' ' + r.statusText);
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', {href: url, download: 'gameday-' + id + '.html'});
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      $('answered').textContent = 'report: ' + e.message;
    }
  }

  async function loadLag() {
    if (!token) return;
    try {
      const d = await api('GET', '/lag');
      drawChart(d.series || []);
    } catch (e) {
      if (e.status === 401 && me) showLogin('The token is no longer valid.');
    }
  }

  function drawChart(series) {
    const W = 720, H = 230, L = 46, R = 10, T = 10, B = 24;
    const now = Date.now() / 1000, t0 = now - 3600;
    let ymax = 0, rpo = 0;
    for (const s of series) { rpo = Math.max(rpo, s.rpo_seconds); for (const p of s.points) ymax = Math.max(ymax, p.s); }
    ymax = Math.max(ymax * 1.1, rpo * 1.5, 0.1);
    const x = (t) => L + (t - t0) / 3600 * (W - L - R);
    const y = (v) => T + (1 - Math.min(v, ymax) / ymax) * (H - T - B);
    const s = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'replication lag per standby over the last hour'});
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4;
      s.append(svg('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e3e6ea'}));
      const t = svg('text', {x: L - 4, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#5b6470'}); t.textContent = secs(v); s.append(t);
    }
    for (let m = 0; m <= 60; m += 15) {
      const t = svg('text', {x: x(t0 + m * 60), y: H - 6, 'text-anchor': 'middle', 'font-size': 10, fill: '#5b6470'});
      t.textContent = m === 60 ? 'now' : '-' + (60 - m) + 'm'; s.append(t);
    }
    if (rpo > 0) s.append(svg('line', {x1: L, x2: W - R, y1: y(rpo), y2: y(rpo), stroke: '#c62828', 'stroke-dasharray': '5 4'}));
    const legend = [];
    series.forEach((sr, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = sr.points.filter((p) => p.t >= t0 - 10).map((p) => x(Math.max(p.t, t0)).toFixed(1) + ',' + y(p.s).toFixed(1));
      if (pts.length === 1) pts.push((W - R) + ',' + pts[0].split(',')[1]);
      if (pts.length) s.append(svg('polyline', {points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 1.6, 'data-node': sr.node}));
      const last = sr.points.length ? sr.points[sr.points.length - 1] : null;
      legend.push(h('span', null, h('i', {style: null, 'data-color': color}), sr.node + (last ? ' ' + secs(last.s) : '')));
    });
    fill($('chart'), s);
    fill($('legend'), legend);
    performance.mark('chart');
    // Colors set through the DOM (the page's policy allows no inline style attribute).
    document.querySelectorAll('#legend i[data-color]').forEach((i) => { i.style.background = i.getAttribute('data-color'); });
  }

  // Wiring.
  $('signin').addEventListener('click', () => signIn($('token').value));
  $('token').addEventListener('keydown', (e) => { if (e.key === 'Enter') signIn($('token').value); });
  $('signout').addEventListener('click', signOut);
  $('approve').addEventListener('click', () => decide(true));
  $('reject').addEventListener('click', () => decide(false));
  $('backup-now').addEventListener('click', () => backupAction(false));
  $('verify').addEventListener('click', () => backupAction(true));
  setInterval(() => { if (me && lastEvent && Date.now() - lastEvent > 20000) setConn('off', 'no news for ' + Math.round((Date.now() - lastEvent) / 1000) + 's'); }, 5000);
  if (token) signIn(token); else showLogin('');
})();
