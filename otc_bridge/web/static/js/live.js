// Live updates: the bridge's Server-Sent Events stream (GET /api/stream, events of type
// "order" whose data is {"event": <event_view>, "order": <order_view>}), with polling as
// the fallback whenever the stream is unavailable or reconnecting. One subscription at a
// time per page (browsers allow few connections per host), owned by the current view.
//
// Stale updates: a response or event can arrive after a newer one (slow GET, stream
// replay after reconnect). Views call ``fresher`` before showing an order: anything
// with an order_version older than what is on screen is dropped.

const RETRY_STREAM_MS = 30_000;

let current = null;

/**
 * Subscribe to ``query`` ({order_id} | {wallet} | {pair}). ``onOrder(data)`` gets every
 * stream event; ``poll()`` is called every ``pollMs`` while the stream is not open (and
 * once at once). Returns nothing; the previous subscription is closed first.
 */
export function subscribe(query, {onOrder, poll, pollMs = 3000}) {
  unsubscribe();
  const sub = {closed: false, source: null, pollTimer: null, retryTimer: null};
  current = sub;
  const params = new URLSearchParams(query).toString();

  const startPolling = () => {
    if (sub.closed || sub.pollTimer) return;
    sub.pollTimer = setInterval(() => { if (!document.hidden) poll(); }, pollMs);
  };
  const stopPolling = () => {
    clearInterval(sub.pollTimer);
    sub.pollTimer = null;
  };

  const open = () => {
    if (sub.closed || typeof EventSource === 'undefined') { startPolling(); return; }
    const source = new EventSource(`/api/stream?${params}`);
    sub.source = source;
    source.addEventListener('open', () => {
      stopPolling();
      poll(); // catch up on anything that happened while we were not listening
    });
    source.addEventListener('order', (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return; // a malformed event is ignored; polling/next event corrects the view
      }
      if (data && typeof data === 'object' && data.order) onOrder(data);
    });
    source.addEventListener('error', () => {
      // CONNECTING: the browser retries by itself (with Last-Event-ID); poll meanwhile.
      // CLOSED: the stream is not available (e.g. an older bridge): poll, retry later.
      startPolling();
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        sub.retryTimer = setTimeout(open, RETRY_STREAM_MS);
      }
    });
  };

  poll();
  open();
}

export function unsubscribe() {
  if (!current) return;
  current.closed = true;
  current.source?.close();
  clearInterval(current.pollTimer);
  clearTimeout(current.retryTimer);
  current = null;
}

/** True when ``incoming`` is not older than ``shown`` (by order_version). */
export function fresher(incoming, shown) {
  if (!incoming) return false;
  if (!shown) return true;
  return Number(incoming.order_version) >= Number(shown.order_version);
}
