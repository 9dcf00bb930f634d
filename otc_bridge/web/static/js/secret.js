// The one-time secret (HTLC preimage) step. Seller-held: the bridge returns it once, to the
// RTC seller, when their escrow is locked (sell create, or taking a buy order); the page
// does not store it. Buyer-held (kind 'buyer'): the RTC buyer's own preimage, made in this
// browser and kept by preimage.js; shown once here so the person saves a copy too. Either
// way it is a modal dialog that cannot be dismissed (Escape is refused, the rest of the page
// is inert) until the person ticks that they saved it; copy and download-as-file are
// offered. While it is up, leaving or reloading the page asks for confirmation.

import {byId, download, replace} from './dom.js';

const dialog = byId('secret-dialog');
const value = byId('secret-value');
const ack = byId('secret-ack');
const cont = byId('secret-continue');
const title = byId('secret-title');
const why = byId('secret-why');
const ackLabel = document.querySelector('label[for="secret-ack"]');
// The seller's wording is the page's own markup: kept to restore it after a buyer's dialog.
const SELLER_TEXT = {title: title.textContent, why: [...why.childNodes].map((n) => n.cloneNode(true)),
  ack: ackLabel.textContent};
const BUYER_TEXT = {
  title: 'Save your preimage',
  why: ['You made this preimage (the HTLC secret) in this browser; the bridge has only its sha256. This page keeps it ',
    'in this browser to reveal it once the bridge has verified your lock, but save a copy too: if this browser\'s data ',
    'is lost, you need it to reveal (paste it on the order page). Give it to nobody: the page reveals it to the bridge ',
    'for you, and whoever else knows it could claim your lock for the seller before the RTC is yours.'],
  ack: 'I have saved a copy of this preimage somewhere safe.',
};
let current = null; // {orderId, secret, htlcHash, kind, resolve}

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
  const buyer = current.kind === 'buyer';
  download(`otc-secret-${current.orderId}.txt`, [
    buyer ? 'OTC bridge: your HTLC preimage - KEEP PRIVATE until the bridge has verified your lock'
      : 'OTC bridge: HTLC secret (preimage) - KEEP PRIVATE until you claim the HTLC',
    `order:     ${current.orderId}`,
    `htlc hash: ${current.htlcHash || ''}  (sha256 of the secret)`,
    `secret:    ${current.secret}`,
    '',
    ...(buyer ? ['Lock the quote in the bridge\'s HTLC with this hash, wait until the order page shows the',
      'lock as verified, then reveal this preimage there to release the RTC to you.']
      : ['Use it to claim the buyer\'s HTLC on the quote chain, then confirm the order on the',
        'bridge page with this secret to release the RTC to the buyer.']),
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

/**
 * Show the secret; resolves when the person has acknowledged saving it. ``kind``: 'seller'
 * (the bridge's one-time secret) or 'buyer' (the RTC buyer's own preimage, buyer-held).
 */
export function showSecret(orderId, secret, htlcHash, kind = 'seller') {
  return new Promise((resolve) => {
    current = {orderId, secret, htlcHash, kind, resolve};
    const text = kind === 'buyer' ? BUYER_TEXT : SELLER_TEXT;
    title.textContent = text.title;
    replace(why, text.why.map((n) => (typeof n === 'string' ? n : n.cloneNode(true))));
    ackLabel.textContent = text.ack;
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
