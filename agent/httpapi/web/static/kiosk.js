// The consent kiosk: the notice, whether the visitor is under 14 (then a
// guardian must agree), one checkbox per purpose, "I agree" and "No
// thanks", then what happens at the camera and the visitor's receipt; or
// how the visit goes on without a picture.
'use strict';

// The tablet is given the kiosk token once: typed into the set-up form (it
// then appears in no address), or as #token=… in the address, which the
// browser's history keeps.
const TOKEN_KEY = 'consentcam.kiosk-token';
let token = takeToken(localStorage, TOKEN_KEY);

let notice = null; // the hashed notice, as /v1/notice serves it
let extra = null; // /kiosk/api/notice: the window's length
let polling = null; // the visit whose status is being followed
let resetTimer = null;

// Why nothing was saved, for each reason of capture.skipped.
const SKIPPED = {
  'no-face': ['Nothing was saved: we did not see your face clearly in front of the camera.',
    '没有保存任何照片：摄像头前没有清楚地看到您的脸。'],
  'multiple-faces': ['Nothing was saved: someone else was in view too, so nothing was taken.',
    '没有保存任何照片：画面里还有其他人，所以什么也没有拍。'],
  'low-quality': ['Nothing was saved: the picture was not clear enough (the face was too small, blurred or turned away).',
    '没有保存任何照片：画面不够清晰（脸太小、模糊或没有正对摄像头）。'],
  'queue-timeout': ['Nothing was saved: the camera was busy with other visitors for too long, and your consent ran out.',
    '没有保存任何照片：摄像头忙于其他访客的时间太长，您的同意已过期。'],
  'queue-full': ['Nothing was saved: too many visitors were waiting for the camera.',
    '没有保存任何照片：等待摄像头的访客太多。'],
  'revoked': ['Nothing was saved: the consent was withdrawn.',
    '没有保存任何照片：同意已被撤回。'],
  'shutdown': ['Nothing was saved: the camera box was switched off.',
    '没有保存任何照片：摄像盒已关闭。'],
  'encode-failed': ['Nothing was saved: the picture could not be processed.',
    '没有保存任何照片：照片无法处理。'],
  'source-down': ['Nothing was saved: the camera was not working.',
    '没有保存任何照片：摄像头没有工作。'],
  'interrupted': ['Nothing was saved: the camera box restarted before your picture was taken.',
    '没有保存任何照片：在拍照之前，摄像盒重新启动了。'],
};

function purposeNames(ids) {
  const out = [];
  ids.forEach((id, i) => {
    const p = notice.purposes.find((q) => q.id === id);
    if (i > 0) out.push('; ');
    out.push(p ? L(p.description) : id);
  });
  return out;
}

function renderNotice() {
  $('controller').replaceChildren(...L(notice.controller));
  const card = (en, zh, ...body) => h('section', {}, h('h2', {}, T(en, zh)), body);
  const cards = [
    card('Who is asking', '谁在征求同意',
      h('p', {}, L(notice.controller)),
      h('p', {}, T('Questions or complaints: ', '咨询或投诉：'), L(notice.contact))),
    card('What is kept', '保存什么', h('p', {}, L(notice.collected))),
    card('How', '怎样拍', h('p', {}, L(notice.method))),
    card('Where, and for how long', '保存在哪里、保存多久',
      h('p', {}, L(notice.storage)),
      h('p', {}, T('How long for each purpose: see the purposes below.', '每项用途的保存期限见下方。'))),
    card('Sensitive information', '敏感个人信息', h('p', {}, L(notice.sensitive))),
    card('Visitors under 14', '未满14周岁的访客', h('p', {}, L(notice.minors))),
    card('How to withdraw', '如何撤回',
      h('p', {}, L(notice.withdraw)),
      h('p', {}, T('If you agree, you get a withdrawal code (also as a QR code): with it, your picture is erased at once, at any time.',
        '如果您同意，您会得到一个撤回码（也有二维码）：凭此码可随时立即删除您的照片。'))),
    card('Saying no', '拒绝', h('p', {}, L(notice.refusal)),
      h('p', {}, T('Without a picture: ', '不拍照时：'), L(notice.alternative))),
  ];
  const c = notice.compliance;
  if (c) {
    cards.push(card('Our records', '我们的记录',
      h('p', {}, T('Personal information protection impact assessment ', '个人信息保护影响评估 '), c.pia_reference,
        T(`, of ${c.pia_date}.`, `（${c.pia_date}）。`)),
      h('p', {}, T('Personal information contact: ', '个人信息保护负责人：'), L(c.dpo_contact))));
  }
  $('notice').replaceChildren(...cards);
  $('notice').removeAttribute('aria-busy');
  $('purposes').replaceChildren(...notice.purposes.map((p) => h('label', {class: 'purpose'},
    h('input', {type: 'checkbox', name: 'purpose', value: p.id}),
    h('span', {},
      h('span', {class: 'purpose-name'}, L(p.description)),
      h('span', {class: 'retention'}, T('Kept for ', '保存'), L(p.retention), T(', then erased.', '，然后删除。'))))));
  for (const e of document.querySelectorAll('.alt-text')) e.replaceChildren(...L(notice.alternative));
  $('hashed').replaceChildren(...T(
    `This is the notice in force (SHA-256 ${notice.hash.slice(0, 16)}…), published in both languages; where they differ, the ${LANG_NAMES[notice.language]} text binds.`,
    `以上为现行告知内容（SHA-256 ${notice.hash.slice(0, 16)}…），以两种语言发布；两种文本不一致时，以${LANG_NAMES[notice.language]}文本为准。`));
  updateAgree();
}

async function loadNotice() {
  for (;;) {
    try {
      const [n, x] = await Promise.all([api('GET', '/v1/notice'), api('GET', '/kiosk/api/notice')]);
      if (n.hash !== x.hash) throw new Error('the notice changed while it was loading');
      notice = n;
      extra = x;
      startLang(n.language);
      renderNotice();
      return;
    } catch (e) {
      showError(T('The notice could not be loaded, so we cannot ask for your consent. Please ask the front desk.',
        '无法载入告知内容，因此无法征求您的同意。请联系前台。'));
      await sleep(5000);
      showError(null);
    }
  }
}

function ticked() {
  return [...document.querySelectorAll('input[name=purpose]:checked')].map((i) => i.value);
}

// age is what the visitor answered: 'adult', 'minor', or '' (not yet).
function age() {
  const a = document.querySelector('input[name=age]:checked');
  return a ? a.value : '';
}

// updateAgree follows the answers: the guardian's step for a visitor under
// 14, the purposes once the age is answered, "I agree" once a purpose is
// ticked (and, for a minor, the guardian confirmed).
function updateAgree() {
  const a = age();
  show('guardian', a === 'minor');
  $('purpose-set').disabled = !notice || a === '';
  const guardian = a !== 'minor' || $('guardian-ok').checked;
  $('agree').disabled = !notice || a === '' || !guardian || ticked().length === 0;
  let hint;
  if (a === '') hint = T('First answer whether the visitor is under 14. Or say no: that is fine too.', '请先回答访客是否未满14周岁。您也可以拒绝，同样没问题。');
  else if (!guardian) hint = T('A parent or guardian must confirm above before anyone can agree.', '须先由父母或其他监护人在上方确认，才能同意。');
  else hint = T('Tick at least one purpose to agree. Or say no: that is fine too.', '请至少勾选一项用途才能同意。您也可以拒绝，同样没问题。');
  $('hint').replaceChildren(...hint);
}

function setupMode(on) {
  show('choice', !on);
  show('setup', on);
}

function busy(on) {
  $('decline').disabled = on;
  $('no-guardian').disabled = on;
  if (on) $('agree').disabled = true;
  else updateAgree();
}

function failed(e) {
  if (e.status === 401 || (e.status === 403 && e.reason !== 'guardian-required')) {
    setupMode(true);
    showError(T('This tablet is not set up as the kiosk (its kiosk token is missing or wrong). Please ask the installer.',
      '这台平板电脑尚未设置为同意终端（缺少或错误的终端令牌）。请联系安装人员。'));
  } else if (e.reason === 'stale-notice') {
    showError(T('The notice was just updated. Please read it again, then choose.', '告知内容刚刚更新。请重新阅读，然后再选择。'));
    loadNotice();
  } else if (e.reason === 'queue-full') {
    showError(T('Too many visitors are waiting for the camera, so no picture is taken. You may try again in a minute.',
      '等待摄像头的访客太多，因此不会拍照。您可以一分钟后再试。'));
  } else {
    showError(T(`Something went wrong, and no picture is taken. Please ask the front desk. (${e.message})`,
      `出了点问题，不会拍照。请联系前台。（${e.message}）`));
  }
}

function showStep(id) {
  for (const s of ['start', 'visit', 'declined', 'no-consent']) show(s, s === id);
  window.scrollTo(0, 0);
  $(id === 'start' ? 'start-title' : id + '-title').focus();
}

async function agree(ev) {
  ev.preventDefault();
  const purposes = ticked();
  const minor = age() === 'minor';
  if (purposes.length === 0 || age() === '' || (minor && !$('guardian-ok').checked)) return;
  showError(null);
  busy(true);
  try {
    showVisit(await api('POST', '/kiosk/api/agree', {token, body: {purposes, notice: notice.hash, origin: location.origin,
      minor, guardian: minor && $('guardian-ok').checked}}));
  } catch (e) {
    failed(e);
  } finally {
    busy(false);
  }
}

// decline records a no: the visitor's, or, for a visitor under 14 with no
// guardian here, that no consent could be given (reason guardian-required).
async function decline(reason) {
  showError(null);
  busy(true);
  try {
    await api('POST', '/kiosk/api/decline', {token, body: reason ? {reason} : {}});
    showStep(reason ? 'no-consent' : 'declined');
    resetTimer = setTimeout(reset, 30000);
  } catch (e) {
    failed(e);
  } finally {
    busy(false);
  }
}

function showVisit(v) {
  showStep('visit');
  $('code').textContent = v.code;
  $('subject').textContent = v.subject;
  $('agreed').replaceChildren(...purposeNames(v.purposes));
  show('by-guardian', Boolean(v.minor && v.guardian));
  const svg = new DOMParser().parseFromString(v.qr_svg, 'image/svg+xml').documentElement;
  svg.setAttribute('aria-hidden', 'true');
  $('qr').replaceChildren(document.importNode(svg, true));
  renderStatus({state: 'waiting', ahead: v.waiting});
  follow(v.visit);
}

// follow polls the visit's status until it is final.
async function follow(visit) {
  polling = visit;
  while (polling === visit) {
    try {
      const s = await api('GET', '/kiosk/api/visits/' + encodeURIComponent(visit), {token});
      if (polling !== visit) return;
      renderStatus(s);
      if (s.state !== 'waiting' && s.state !== 'open') {
        polling = null;
        resetTimer = setTimeout(reset, 120000);
        return;
      }
    } catch (e) {
      if (e.status === 404) return; // the box restarted: the receipt stays valid
    }
    await sleep(500);
  }
}

let shown = '';

function renderStatus(s) {
  const key = s.state + '/' + s.ahead + '/' + s.reason;
  if (key === shown) return;
  shown = key;
  let title;
  let msg;
  switch (s.state) {
    case 'waiting':
      title = T('Waiting for the camera', '正在等待摄像头');
      msg = s.ahead === 0 ?
        T('The camera is getting ready for you.', '摄像头正在为您准备。') :
        T(`${s.ahead} visitor(s) before you.`, `您前面还有 ${s.ahead} 位访客。`);
      break;
    case 'open':
      title = T('The camera is on', '摄像头已开启');
      msg = T(`Please look at the camera. It looks for your face for ${extra.window_seconds} seconds at most, keeps one picture, then stops.`,
        `请看向摄像头。它最多寻找您的脸 ${extra.window_seconds} 秒，只保存一张照片，然后停止。`);
      break;
    case 'saved':
      title = T('Saved', '已保存');
      msg = [T('One picture of your face, kept for: ', '一张您的面部照片，用于：'), purposeNames(s.purposes),
        T('. It is erased when each purpose\'s time is up, or at once if you withdraw.', '。每项用途的期限一到即删除；您撤回同意时立即删除。')];
      break;
    case 'skipped':
      title = T('Nothing saved', '没有保存');
      msg = T(...(SKIPPED[s.reason] || [`Nothing was saved (${s.reason}).`, `没有保存任何照片（${s.reason}）。`]));
      break;
    case 'withdrawn':
      title = T('Withdrawn', '已撤回');
      msg = T('You withdrew your consent: anything saved from this visit is erased.', '您已撤回同意：本次来访保存的内容已全部删除。');
      break;
    default:
      title = s.state;
      msg = '';
  }
  const st = $('status');
  st.dataset.state = s.state;
  st.replaceChildren(h('p', {class: 'state'}, title), h('p', {}, msg));
}

// reset makes the page ready for the next visitor: nothing of the last one
// left, the binding language and normal text again.
function reset() {
  clearTimeout(resetTimer);
  polling = null;
  shown = '';
  $('choice').reset();
  for (const id of ['code', 'subject', 'agreed', 'qr', 'status']) $(id).replaceChildren();
  delete $('status').dataset.state;
  showError(null);
  resetView();
  updateAgree();
  showStep('start');
}

// A visitor may walk away from the first page having switched the language,
// the text size or answered: after two idle minutes it is ready for the
// next one again.
const IDLE = 120000;
let idleTimer = null;
function idle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (!$('start').hidden && !$('choice').hidden) reset();
  }, IDLE);
}
for (const type of ['click', 'keydown', 'change', 'touchstart']) document.addEventListener(type, idle, {passive: true});

$('setup-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const given = $('setup-token').value.trim();
  $('setup-token').value = '';
  if (!given) return;
  token = given;
  localStorage.setItem(TOKEN_KEY, token);
  showError(null);
  setupMode(false);
});
$('choice').addEventListener('change', updateAgree);
$('choice').addEventListener('submit', agree);
$('decline').addEventListener('click', () => decline(''));
$('no-guardian').addEventListener('click', () => decline('guardian-required'));
$('done').addEventListener('click', reset);
$('back').addEventListener('click', reset);
$('back-minor').addEventListener('click', reset);
setupMode(!token);
updateAgree();
loadNotice();
