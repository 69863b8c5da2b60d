// The withdraw page: a withdrawal code in, the erasure's signed receipt out.
// The code may come in the address (#code=…, from the receipt's QR code).
'use strict';

const given = fromAddress('code');
loadBinding();
if (given !== null) $('code').value = given;

$('withdraw').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError(null);
  const code = $('code').value.trim();
  if (!code) {
    showError(T('Enter the code from your receipt first.', '请先输入收据上的撤回码。'));
    $('code').focus();
    return;
  }
  $('submit').disabled = true;
  try {
    done(await api('POST', '/kiosk/api/withdraw', {body: {code}}));
  } catch (e) {
    if (e.reason === 'bad-code') {
      showError(T('This code is not right: check it against your receipt. Nothing was changed.',
        '撤回码不正确：请对照收据检查。没有做任何更改。'));
    } else {
      showError(T(`The withdrawal did not go through: please try again, or ask the front desk. (${e.message})`,
        `撤回没有完成：请重试，或联系前台。（${e.message}）`));
    }
    $('code').focus();
  } finally {
    $('submit').disabled = false;
  }
});

function done(w) {
  show('withdraw', false);
  show('done', true);
  $('erased').replaceChildren(...(w.erased === 0 ?
    T('There was no picture of you left to erase: nothing of yours is kept.', '没有需要删除的照片：本摄像盒没有保存您的任何内容。') :
    T(`We erased ${w.erased} picture(s) of you.`, `我们删除了您的 ${w.erased} 张照片。`)));
  $('subject').textContent = w.subject;
  $('time').textContent = new Date(w.time).toLocaleString();
  // Nothing left to erase: the box records nothing new and signs nothing.
  show('logged', Boolean(w.receipt));
  show('signed', Boolean(w.receipt));
  if (w.receipt) {
    $('seq').textContent = String(w.seq);
    const receipt = JSON.stringify(w.receipt, null, 2);
    $('receipt').textContent = receipt;
    $('download').href = URL.createObjectURL(new Blob([receipt + '\n'], {type: 'application/json'}));
  }
  $('done-title').focus();
}
