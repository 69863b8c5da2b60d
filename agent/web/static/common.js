// Shared by the kiosk's pages: the language switch, bearer tokens, the API,
// and a small DOM helper. No library, nothing from another site.
'use strict';

const LANGS = ['en', 'zh-Hans'];
const LANG_KEY = 'consentcam.lang';

// h builds an element: h('p', {class: 'x'}, 'text', child, [more]).
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c != null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// T is a text in both languages; the page shows the one chosen.
function T(en, zh) {
  return [h('span', {lang: 'en'}, en), h('span', {lang: 'zh-Hans'}, zh)];
}

function setLang(lang) {
  if (!LANGS.includes(lang)) lang = 'en';
  document.documentElement.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
  const b = document.getElementById('lang');
  if (b) {
    // The switch is written in the language it switches to.
    const other = lang === 'en' ? 'zh-Hans' : 'en';
    b.textContent = other === 'en' ? 'English' : '简体中文';
    b.lang = other;
    b.onclick = () => setLang(other);
  }
}

setLang(localStorage.getItem(LANG_KEY) ||
  ((navigator.language || '').toLowerCase().startsWith('zh') ? 'zh-Hans' : 'en'));

// takeToken moves a bearer token given in the address (#token=…) into the
// storage, strips it from the address, and returns the stored token.
function takeToken(storage, name) {
  const key = 'consentcam.' + name + '-token';
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    storage.setItem(key, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return storage.getItem(key) || '';
}

// APIError is a failed request: status 0 when the box did not answer.
class APIError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

// api sends a request to the box and returns the decoded answer.
async function api(method, path, {token, body} = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new APIError(0, 'network', String(e));
  }
  // JSON, or text (the audit log's JSON Lines, the checkpoint note).
  const json = (resp.headers.get('Content-Type') || '').split(';')[0].trim() === 'application/json';
  const data = json ? await resp.json() : await resp.text();
  if (!resp.ok) {
    throw new APIError(resp.status, (json && data.reason) || '', (json && data.error) || String(data));
  }
  return data;
}

function show(id, on) {
  document.getElementById(id).hidden = !on;
}

// showError puts a message in the page's alert region (null clears it).
function showError(msg) {
  const e = document.getElementById('error');
  e.replaceChildren(...(msg ? [msg].flat() : []));
  e.hidden = !msg;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
