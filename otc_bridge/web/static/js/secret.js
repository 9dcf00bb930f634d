// The one-time secret (HTLC preimage) step. The bridge returns it once, to the RTC seller,
// when their escrow is locked (sell create, or taking a buy order). It is shown in a modal
// dialog that cannot be dismissed (Escape is refused, the rest of the page is inert) until
// the person ticks that they saved it; copy and download-as-file are offered. While it is
// up, leaving or reloading the page asks for confirmation. The page does not store it.

import {byId, download} from './dom.js';

const dialog = byId('secret-dialog');
const value = byId('secret-value');
const ack = byId('secret-ack');
const cont = byId('secret-continue');
let current = null; // {orderId, secret, htlcHash, resolve}

function guardUnload(event) {
  event.preventDefault();
  event.returnValue = ''; // legacy browsers need a value to show the prompt
}

ack.addEventListener('change', () => { cont.disabled = !ack.checked; });
dialog.addEventListener('cancel', (event) => event.preventDefault()); // no Escape
byId('secret-copy').addEventListener('click', async () => {
  const button = byId('secret-copy');
  try {
    await navigator.clipboard.writeText(value.value);
    button.textContent = 'Copied — paste it somewhere safe';
  } catch {
    value.focus();
    value.select();
    button.textContent = 'Selected — press Ctrl+C (⌘C) to copy';
  }
});
byId('secret-download').addEventListener('click', () => {
  if (!current) return;
  download(`otc-secret-${current.orderId}.txt`, [
    'OTC bridge: HTLC secret (preimage) - KEEP PRIVATE until you claim the HTLC',
    `order:     ${current.orderId}`,
    `htlc hash: ${current.htlcHash || ''}  (sha256 of the secret)`,
    `secret:    ${current.secret}`,
    '',
    'Use it to claim the buyer\'s HTLC on the quote chain, then confirm the order on the',
    'bridge page with this secret to release the RTC to the buyer.',
    '',
  ].join('\n'));
  byId('secret-download').textContent = 'Downloaded — download again';
});
byId('secret-form').addEventListener('submit', (event) => {
  if (!ack.checked) { // belt and braces: the button is disabled anyway
    event.preventDefault();
    return;
  }
  window.removeEventListener('beforeunload', guardUnload);
  value.value = '';
  const done = current;
  current = null;
  done?.resolve();
});

/** Show the secret; resolves when the person has acknowledged saving it. */
export function showSecret(orderId, secret, htlcHash) {
  return new Promise((resolve) => {
    current = {orderId, secret, htlcHash, resolve};
    byId('secret-order').textContent = orderId;
    value.value = secret;
    ack.checked = false;
    cont.disabled = true;
    byId('secret-copy').textContent = 'Copy secret';
    byId('secret-download').textContent = 'Download as a file';
    window.addEventListener('beforeunload', guardUnload);
    dialog.showModal();
    value.focus();
    value.select();
  });
}
