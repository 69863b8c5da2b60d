// Shared by the kiosk's pages: the language switch, bearer tokens, the API,
// and a small DOM helper. No library, nothing from another site.
'use strict';

const LANGS = ['en', 'zh-Hans'];
const LANG_KEY = 'consentcam.lang';

const $ = (id) => document.getElementById(id);

// h builds an element: h('p', {class: 'x'}, 'text', child, [more]). An
// attribute or a child that is null or undefined is left out.
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v != null) e.setAttribute(k, v);
  }
  e.append(...children.flat(Infinity).filter((c) => c != null));
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
  const b = $('lang');
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

// fromAddress returns the value of name given in the address (#name=…),
// or null, and strips the fragment from the address bar and the session's
// back-and-forward list. The browser's history may have recorded the
// address already: a secret is better typed into a form.
function fromAddress(name) {
  const m = new RegExp('(?:^#|&)' + name + '=([^&]*)').exec(location.hash);
  if (!m) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return decodeURIComponent(m[1]);
}

// takeToken moves a bearer token given in the address (#token=…) into the
// storage under key, and returns the stored token.
function takeToken(storage, key) {
  const given = fromAddress('token');
  if (given !== null) storage.setItem(key, given);
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
  $(id).hidden = !on;
}

// showError puts a message in the page's alert region (null clears it).
function showError(msg) {
  const e = $('error');
  e.replaceChildren(...(msg ? [msg].flat() : []));
  e.hidden = !msg;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
