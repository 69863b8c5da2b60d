// The auditor's page: the live audit log and the latest checkpoint, read
// from /v1/audit and /v1/audit/checkpoint with an auditor token. It writes
// nothing.
'use strict';

const TOKEN_KEY = 'consentcam.auditor-token';
const KEEP = 500; // rows shown
const FIRST = 200; // events shown from before the page opened

let token = takeToken(sessionStorage, TOKEN_KEY);
loadBinding();
let last = -1; // seq of the newest event shown
let run = 0; // the polling started last: the loops of an earlier one stop

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  $('token').value = '';
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  }
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

function denied(e) {
  if (e.status === 401 || e.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    run++;
    show('log', false);
    show('login', true);
    showError(T('This token is not an auditor token of this box.', '此令牌不是本摄像盒的审计员令牌。'));
    return true;
  }
  return false;
}

function row(ev) {
  // Ids and reasons may wrap; the short columns may not.
  const cell = (v, nowrap) => h('td', {class: nowrap ? 'nw' : null}, v == null ? '' : v);
  return h('tr', {'data-type': ev.type},
    cell(ev.seq, true), cell((ev.time || '').replace('T', ' ').replace('Z', ''), true), cell(h('code', {}, ev.type), true),
    cell(ev.visit), cell(ev.subject), cell((ev.purposes || []).join(', ')), cell(ev.reason), cell(ev.actor, true));
}

async function pollEvents(gen) {
  while (gen === run) {
    try {
      const q = last >= 0 ? `?after=${last}&limit=1000` : '?limit=1000';
      const text = await api('GET', '/v1/audit' + q, {token});
      if (gen !== run) return;
      const body = $('events').tBodies[0];
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        const ev = JSON.parse(line);
        last = ev.seq;
        $('origin').textContent = `${ev.site} / ${ev.camera}`;
        body.prepend(row(ev));
      }
      while (body.rows.length > KEEP) body.deleteRow(-1);
      $('count').replaceChildren(...T(`Newest event: seq ${last}.`, `最新事件：seq ${last}。`));
      showError(null);
    } catch (e) {
      if (gen !== run || denied(e)) return;
      showError(T(`The box does not answer (${e.message}); trying again.`, `摄像盒没有响应（${e.message}）；正在重试。`));
    }
    await sleep(1000);
  }
}

async function pollCheckpoint(gen) {
  while (gen === run) {
    try {
      const cp = await api('GET', '/v1/audit/checkpoint', {token});
      if (gen !== run) return;
      $('checkpoint').textContent = cp;
    } catch (e) {
      if (gen !== run || denied(e)) return;
    }
    await sleep(5000);
  }
}

async function start() {
  const gen = ++run;
  $('events').tBodies[0].replaceChildren();
  show('login', false);
  show('log', true);
  showError(null);
  try {
    // Start with the last FIRST events.
    const health = await api('GET', '/healthz');
    last = Math.max(-1, health.audit_size - FIRST - 1);
  } catch (e) {
    last = -1;
  }
  pollEvents(gen);
  pollCheckpoint(gen);
}

if (token) start();
else show('login', true);
