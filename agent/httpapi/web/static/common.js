// Shared by the kiosk's pages: languages and the larger text, bearer
// tokens, the API, and a small DOM helper. No library, nothing from
// another site.
'use strict';

// The languages the pages are written in. Every built-in text exists in
// both, as <span lang="en">…</span><span lang="zh-CN">…</span>; the
// stylesheet shows those of the language chosen. A page opens in the
// notice's binding language (zh-CN unless the box is set to en).
const LANGS = ['zh-CN', 'en'];
const LANG_NAMES = {'zh-CN': '简体中文', 'en': 'English'};
const LANG_KEY = 'consentcam.lang';
const SIZE_KEY = 'consentcam.large';
let binding = 'zh-CN';

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

// T is a built-in text in both languages; the page shows the one chosen.
function T(en, zh) {
  return [h('span', {lang: 'en'}, en), h('span', {lang: 'zh-CN'}, zh)];
}

// L is a text of the notice ({"en": …, "zh-CN": …}) in every language of
// the page: where it has none in a language, its binding-language text is
// shown instead, marked with its own language for screen readers.
function L(text) {
  return LANGS.map((lang) => {
    const has = Object.prototype.hasOwnProperty.call(text || {}, lang);
    return h('span', {lang: has ? lang : binding, 'data-l': lang}, has ? text[lang] : (text || {})[binding] || '');
  });
}

function setLang(lang) {
  if (!LANGS.includes(lang)) lang = binding;
  const root = document.documentElement;
  root.lang = lang;
  sessionStorage.setItem(LANG_KEY, lang);
  // <html data-title-en=… data-title-zh-CN=…> holds the title in each.
  document.title = root.dataset[lang === 'en' ? 'titleEn' : 'titleZhCn'] || document.title;
  const b = $('lang');
  if (b) {
    // The switch is written in the language it switches to.
    const other = LANGS.find((l) => l !== lang);
    b.textContent = LANG_NAMES[other];
    b.lang = other;
  }
}

function setLarge(on) {
  document.documentElement.classList.toggle('large', on);
  sessionStorage.setItem(SIZE_KEY, on ? '1' : '');
  const b = $('size');
  if (b) b.setAttribute('aria-pressed', String(on));
}

// startLang takes the notice's binding language and shows the page in the
// language chosen in this tab, or in the binding one.
function startLang(lang) {
  if (LANGS.includes(lang)) binding = lang;
  setLang(sessionStorage.getItem(LANG_KEY) || binding);
}

// resetView returns the page to the binding language and normal text, for
// the next visitor.
function resetView() {
  sessionStorage.removeItem(LANG_KEY);
  setLang(binding);
  setLarge(false);
}

setLang(sessionStorage.getItem(LANG_KEY) || document.documentElement.lang);
setLarge(sessionStorage.getItem(SIZE_KEY) === '1');
if ($('lang')) $('lang').addEventListener('click', () => setLang(LANGS.find((l) => l !== document.documentElement.lang)));
if ($('size')) $('size').addEventListener('click', () => setLarge(!document.documentElement.classList.contains('large')));

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

// loadBinding reads the binding language from the notice, for the pages
// that show no notice.
async function loadBinding() {
  try {
    startLang((await api('GET', '/v1/notice')).language);
  } catch (e) {
    // The page stays in the language it opened in.
  }
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
