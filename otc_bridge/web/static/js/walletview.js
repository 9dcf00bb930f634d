// The Wallet view: create or import a key, see the RTC address, choose to keep the key in
// this browser (and learn where it is and how to export or delete it), back it up.
// On a local `otc-bridge dev` setup it also offers the two funded demo wallets.

import {busy, byId, copyButton, download, el, field, replace} from './dom.js';
import {notify, setWallet, state} from './state.js';
import {backend, demoWallet, keep, secureContextOk, storedSeedHex, unkeep, Wallet, STORAGE_KEY} from './wallet.js';

/** Restore a kept wallet at start-up (only if the person asked to keep one). */
export async function restoreWallet() {
  const seed = storedSeedHex();
  if (!seed || !secureContextOk()) return;
  try {
    setWallet(await Wallet.fromHex(seed));
  } catch {
    unkeep(); // unreadable entry: drop it rather than fail every start
  }
}

export function showWallet() {
  const body = byId('wallet-body');
  if (!secureContextOk()) {
    replace(body, el('p', {class: 'error', role: 'alert'},
      'This page is not open in a secure context (HTTPS, or http://127.0.0.1 / localhost). Browsers offer no ',
      'cryptography there, and a key used over plain HTTP could be stolen by anyone on the network. ',
      'Open the bridge over HTTPS or on this machine\'s loopback address to use a wallet.'));
    return;
  }
  replace(body, state.wallet ? walletCard(state.wallet) : noWallet());
}

function noWallet() {
  const error = el('p', {class: 'form-error', id: 'wallet-error', role: 'alert', hidden: true});
  const create = el('button', {type: 'button', class: 'primary'}, 'Create a new wallet');
  create.addEventListener('click', () => busy(create, async () => use(await Wallet.generate(), 'New wallet created.')));
  const key = field('import-key', 'Private key (64 hex characters)',
    el('input', {type: 'password', autocomplete: 'off', spellcheck: 'false', class: 'mono'}),
    'The 32-byte Ed25519 private key, as exported by this page or by otc_bridge.client.Wallet.');
  const importButton = el('button', {type: 'submit', class: 'secondary'}, 'Import this key');
  const form = el('form', {novalidate: true}, key.wrap, importButton);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(importButton, async () => {
      try {
        const wallet = await Wallet.fromHex(key.input.value);
        key.input.value = '';
        use(wallet, 'Wallet imported.');
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
      }
    });
  });
  const parts = [
    el('p', {}, 'Your wallet is an Ed25519 key pair made in this browser. The private key never leaves it: ',
      'the page signs each order here and sends only the signature.'),
    el('section', {class: 'card', 'aria-labelledby': 'new-title'}, el('h2', {id: 'new-title'}, 'New wallet'),
      el('p', {}, 'Creates a random key. You will see its RTC address; fund it on the RustChain node to sell RTC.'), create),
    el('section', {class: 'card', 'aria-labelledby': 'import-title'}, el('h2', {id: 'import-title'}, 'Import a private key'), form),
    error,
  ];
  if (state.config.dev) parts.push(devWallets());
  return parts;
}

function devWallets() {
  const buttons = [['seller', 'otc-bridge demo seller'], ['buyer', 'otc-bridge demo buyer']].map(([name, phrase]) => {
    const b = el('button', {type: 'button', class: 'secondary'}, `Use the demo ${name} wallet`);
    b.addEventListener('click', () => busy(b, async () => use(await demoWallet(phrase), `Demo ${name} wallet in use.`)));
    return b;
  });
  return el('section', {class: 'card dev', 'aria-labelledby': 'dev-title'},
    el('h2', {id: 'dev-title'}, 'Local dev setup'),
    el('p', {}, 'This bridge runs on the local dev node (otc-bridge dev), which funded two demo wallets with RTC. ',
      'Use the seller in one browser window and the buyer in another to try a whole swap. Their keys are public: ',
      'never use them for anything real.'),
    el('div', {class: 'actions'}, buttons));
}

function use(wallet, message) {
  setWallet(wallet);
  notify(`${message} Address ${wallet.address}.`);
  showWallet();
  byId('wallet-title').focus();
}

function walletCard(wallet) {
  const address = el('output', {class: 'mono wrap', id: 'wallet-address'}, wallet.address);
  const kept = storedSeedHex() === wallet.seedHex;
  const keepBox = el('input', {type: 'checkbox', id: 'wallet-keep'});
  keepBox.checked = kept;
  const keepState = el('p', {class: kept ? 'hint' : 'warning', id: 'wallet-keep-state'});
  const describeKeep = () => {
    keepState.className = keepBox.checked ? 'hint' : 'warning';
    keepState.textContent = keepBox.checked
      ? `Kept in this browser: localStorage of ${location.origin}, entry "${STORAGE_KEY}", unencrypted. Anyone using this browser profile can read it. To delete it, untick the box (or Forget this wallet); clearing this site's data deletes it too.`
      : 'Not kept: the key lives only in this tab. Reloading or closing it forgets the wallet — download a backup, or tick the box to keep it here.';
  };
  describeKeep();
  keepBox.addEventListener('change', () => {
    if (keepBox.checked) keep(wallet); else unkeep();
    describeKeep();
    notify(keepBox.checked ? 'Wallet kept in this browser.' : 'Wallet deleted from this browser\'s storage.');
  });
  const secret = el('input', {id: 'wallet-private', class: 'mono', readonly: true, type: 'password'});
  secret.value = wallet.seedHex;
  const reveal = el('button', {type: 'button', class: 'secondary small', 'aria-controls': 'wallet-private'}, 'Show');
  reveal.addEventListener('click', () => {
    secret.type = secret.type === 'password' ? 'text' : 'password';
    reveal.textContent = secret.type === 'password' ? 'Show' : 'Hide';
  });
  const backup = el('button', {type: 'button', class: 'secondary'}, 'Download key backup');
  backup.addEventListener('click', () => download(`rtc-wallet-${wallet.address}.txt`, wallet.backupText()));
  const forget = el('button', {type: 'button', class: 'danger'}, 'Forget this wallet');
  forget.addEventListener('click', () => {
    if (forget.dataset.armed !== '1') {
      forget.dataset.armed = '1';
      forget.textContent = 'Click again to forget it (have you a backup?)';
      return;
    }
    if (storedSeedHex() === wallet.seedHex) unkeep();
    setWallet(null);
    notify('Wallet forgotten: it is no longer in this page or this browser\'s storage.');
    showWallet();
  });
  const signer = el('span', {}, '…');
  backend().then((b) => {
    signer.textContent = b === 'webcrypto' ? 'the browser\'s WebCrypto Ed25519' : 'the bundled noble-ed25519 library (MIT)';
  });
  return [
    el('section', {class: 'card', 'aria-labelledby': 'addr-title'},
      el('h2', {id: 'addr-title'}, 'Your RTC address'),
      el('p', {}, address, ' ', copyButton('Copy address', () => wallet.address)),
      el('p', {class: 'hint'}, 'RTC + the first 40 hex characters of sha256 of your public key. Fund it on the RustChain node to sell RTC: ',
        'selling locks the amount plus the node\'s 5 % fee in escrow.'),
      el('p', {class: 'hint'}, 'Public key: ', el('span', {class: 'mono wrap'}, wallet.publicKeyHex)),
      el('p', {class: 'hint'}, 'Signing with ', signer, '.'),
      state.config.dev && el('p', {class: 'hint'}, 'Local dev setup: a new wallet starts with 0 RTC, so it can buy but not sell; ',
        'the demo wallets (Forget this one to see them) hold RTC.'),
      el('p', {}, el('a', {href: '#/market', class: 'button'}, 'Go to the market'), ' ',
        el('a', {href: '#/orders', class: 'button'}, 'My orders'))),
    el('section', {class: 'card', 'aria-labelledby': 'keep-title'},
      el('h2', {id: 'keep-title'}, 'Keeping the key'),
      el('div', {class: 'check'}, keepBox, el('label', {for: 'wallet-keep'}, 'Keep this wallet in this browser')),
      keepState),
    el('section', {class: 'card', 'aria-labelledby': 'export-title'},
      el('h2', {id: 'export-title'}, 'Export (backup)'),
      el('div', {class: 'field'}, el('label', {for: 'wallet-private'}, 'Private key — whoever has it controls the wallet'),
        el('div', {class: 'row'}, secret, reveal, copyButton('Copy key', () => wallet.seedHex, secret))),
      el('div', {class: 'actions'}, backup, forget)),
  ];
}
