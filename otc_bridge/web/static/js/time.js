// Dates and live countdowns. Deadlines from the API are unix seconds; they are shown as
// the person's local date and time plus "in 11 h 59 min" that ticks once a second,
// measured on the bridge's clock (serverNow) so a wrong local clock cannot mislead.

import {el} from './dom.js';
import {serverNow} from './api.js';

const DATE_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  timeZoneName: 'short',
});

/** Local date and time of unix seconds ``ts``. */
export function localDate(ts) {
  return Number.isFinite(ts) ? DATE_FORMAT.format(new Date(ts * 1000)) : '—';
}

/** "2 d 3 h", "11 h 59 min", "4 min 10 s", "12 s". */
export function duration(seconds) {
  let s = Math.abs(Math.floor(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** "in 3 h 2 min" / "5 min 1 s ago" relative to the bridge's clock. */
export function relative(ts) {
  const delta = ts - serverNow();
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(delta)} ago`;
}

/**
 * A <time> element showing the local date and a countdown that updates every second.
 * ``passedText`` replaces the countdown once the moment is past (e.g. "deadline passed").
 */
export function deadline(ts, passedText) {
  const when = el('time', {datetime: new Date(ts * 1000).toISOString()}, localDate(ts));
  const countdown = el('span', {class: 'countdown', dataset: {until: String(ts), passed: passedText || ''}});
  tick(countdown);
  return el('span', {class: 'deadline'}, when, ' ', countdown);
}

/** Aim the countdown ``node`` (made by deadline) at unix seconds ``ts`` on the bridge's clock. */
export function retarget(node, ts) {
  if (node.dataset.until === String(ts)) return;
  node.dataset.until = String(ts);
  tick(node);
}

function tick(node) {
  const ts = Number(node.dataset.until);
  const left = ts - serverNow();
  const text = left >= 0 ? `(${relative(ts)})` : `(${node.dataset.passed || relative(ts)})`;
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('past', left < 0);
  node.classList.toggle('soon', left >= 0 && left < 3600);
}

// One timer for every countdown on the page (cheap, and removed nodes simply drop out).
setInterval(() => {
  for (const node of document.querySelectorAll('.countdown[data-until]')) tick(node);
}, 1000);
