"""The page itself: headers and CSP, signing compatible with the API byte for byte, exact
money input, markup in data rendered as text, stale live updates dropped, labels and
keyboard use, the wallet's keep/forget, the phone-width layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bridge_support import ADMIN_TOKEN, SELLER_ETH, WORKER, matched_sell
from playwright.sync_api import expect

from otc_bridge.client import Wallet
from otc_bridge.domain.status import Status
from otc_bridge.domain.wallets import signed_message
from otc_bridge.storage import events

pytestmark = pytest.mark.browser

CRAFTED_WALLET = 'RTC<img src=x onerror="window.__xss=1">'
CRAFTED_ADDRESS = '<script>window.__xss=2</script>'
CRAFTED_REASON = 'order created <b onmouseover="window.__xss=3">bold</b> &amp; <svg onload="window.__xss=4">'

# What each view shows once it has rendered what it loads, for a visitor without a wallet
# on a market without orders or trades: (the view's part that is filled in last, its text).
VIEW_RENDERED = {
    "#/market": ("#trades-table tbody", "No trades yet on this pair."),  # refresh() renders the trades last
    "#/wallet": ("#wallet-body", "Create a new wallet"),
    "#/orders": ("#orders-body", "No wallet yet."),
}


def expect_view(page, view: str) -> None:
    """Wait until ``view`` is the one shown, with what it loads rendered."""
    expect(page).to_have_url(re.compile(f"/{re.escape(view)}$"))
    name = view.removeprefix("#/")
    expect(page.locator(f"#view-{name}")).to_be_visible()
    for other in ("market", "wallet", "orders", "order"):
        if other != name:
            expect(page.locator(f"#view-{other}")).to_be_hidden()
    part, text = VIEW_RENDERED[view]
    expect(page.locator(part)).to_contain_text(text)


def test_csp_and_security_headers_and_no_console_errors(new_trader, stream_available):
    trader = new_trader("visitor")
    response = trader.page.reload()
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    # Every script and stylesheet comes from our origin; nothing inline.
    sources = trader.page.evaluate("""() => [...document.scripts].map(s => [s.src, s.textContent.trim().length])
        .concat([...document.querySelectorAll('link[rel=stylesheet]')].map(l => [l.href, 0]))""")
    for src, inline_length in sources:
        assert src.startswith(trader.base_url) and inline_length == 0, src
    assert trader.page.evaluate("document.querySelectorAll('[style]').length") == 0
    # Visit each view and leave it only once it has rendered what it loaded: its console
    # errors (a failed request, an exception while rendering) are in by then.
    page = trader.page
    expect_view(page, "#/market")  # the first load (after the reload above)
    for view in ("#/wallet", "#/orders"):
        page.goto(f"{trader.base_url}/{view}")
        expect_view(page, view)
    # Back on the market, which is already rendered from the first visit: wait for its three
    # requests, then for the old trades row (refresh() renders the trades last) to be replaced.
    last_rendered = page.locator("#trades-table tbody tr").first.element_handle()
    with (page.expect_response(lambda r: "/api/orderbook?" in r.url) as book,
          page.expect_response(lambda r: "/api/orders?" in r.url) as listing,
          page.expect_response(lambda r: "/api/trades?" in r.url) as trades):
        page.goto(f"{trader.base_url}/#/market")
    assert [info.value.status for info in (book, listing, trades)] == [200, 200, 200]
    page.wait_for_function("row => !row.isConnected", arg=last_rendered)
    expect_view(page, "#/market")
    assert trader.unexpected_console_errors(stream_available) == []


def test_signatures_match_the_api_byte_for_byte(new_trader):
    """Canonical JSON and Ed25519 signatures of both signing backends equal Python's."""
    trader = new_trader("crypto")
    wallet = Wallet.from_seed("browser signing test")
    seed_hex = wallet.private_key.private_bytes_raw().hex()
    bound = {"side": "sell", "pair": "RTC/USDC", "amount_micro_rtc": 12_345_678,
             "price_per_rtc_nano_quote": 50_000_001, "ttl_seconds": 604800,
             "eth_address": 'é"\\\n\t\x7f\u2028😀<>&'}
    expected_message = signed_message("create_order", "create_order", 1_800_000_000, wallet.address, bound)
    result = trader.page.evaluate("""async ([seedHex, bound]) => {
        const w = await import('/static/js/wallet.js');
        const c = await import('/static/js/canonical.js');
        const out = {};
        for (const kind of ['webcrypto', 'noble']) {
          const wallet = await w.Wallet.fromSeed(w.fromHex(seedHex), kind);
          const msg = c.signedMessage('create_order', 'create_order', 1800000000, wallet.address, bound);
          out[kind] = {address: wallet.address, pub: wallet.publicKeyHex,
                       message: new TextDecoder().decode(msg), signature: w.toHex(await wallet.sign(msg))};
        }
        out.backend = await w.backend();
        return out;
    }""", [seed_hex, bound])
    assert result["backend"] == "webcrypto"  # Debian's Chromium has WebCrypto Ed25519
    for kind in ("webcrypto", "noble"):
        got = result[kind]
        assert got["address"] == wallet.address
        assert got["pub"] == wallet.public_key_hex
        assert got["message"].encode() == expected_message
        assert got["signature"] == wallet.private_key.sign(expected_message).hex()


def test_money_input_is_exact_and_refuses_over_precision(new_trader):
    trader = new_trader("money")
    out = trader.page.evaluate("""async () => {
        const m = await import('/static/js/money.js');
        const tryParse = (t, d) => {
          try { return m.parseUnits(t, d, 'the amount').toString(); } catch (e) { return 'ERR ' + e.message; }
        };
        return {
          a: tryParse('2.01', 6), b: tryParse('0.1234567', 6), c: tryParse('1e3', 6), d: tryParse('2.0100000', 6),
          e: tryParse('.5', 9), f: tryParse('-1', 6),
          total: m.totalQuoteNano(3333333n, 333333333n).toString(),
          wei: m.totalQuoteBaseUnits(10000000n, 50000000n, 18).toString(),
          fee: m.nodeFeeMicro(2010000n).toString(), fee2: m.nodeFeeMicro(10000000000n).toString(),
          fmt: m.formatUnits(1234567890123n, 9),
        };
    }""")
    assert out["a"] == "2010000" and out["d"] == "2010000" and out["e"] == "500000000"
    assert "more than 6 decimal places" in out["b"]
    assert out["c"].startswith("ERR") and out["f"].startswith("ERR")
    assert out["total"] == str(-(-(3333333 * 333333333) // 10**6))  # rounded up, as money.py
    assert out["wei"] == str(500_000_000_000_000_000)
    assert out["fee"] == str(int(2010000 * 0.05)) and out["fee2"] == str(int(10_000_000_000 * 0.05))
    assert out["fmt"] == "1,234.567890123"


def test_markup_in_api_data_renders_as_text(new_trader, bridge):
    """A hostile wallet string, quote address and event reason (written straight into the
    database, as a compromised or legacy row could hold them) show as literal text."""
    now = bridge.now()
    order_id = "otc_0000000000c0ffee"
    with bridge.db.transaction() as tx:
        tx.execute("INSERT INTO orders (order_id, side, pair, status, maker_wallet, maker_quote_address, "
                   "amount_micro_rtc, price_nano_quote, total_quote_nano, ttl_seconds, created_at, expires_at, "
                   "updated_at) VALUES (?, 'buy', 'RTC/USDC', 'open', ?, ?, 1000000, 50000000, 50000000, 86400, "
                   "?, ?, ?)", (order_id, CRAFTED_WALLET, CRAFTED_ADDRESS, now, now + 86400, now))
        events.record_event(tx, order_id, 1, "transition", actor=CRAFTED_WALLET, reason=CRAFTED_REASON, now=now,
                           to=Status.OPEN)
    trader = new_trader("victim")
    page = trader.page
    expect(page.locator("#open-table")).to_contain_text('RTC<img …=1">')  # the market's short form
    trader.open_order(order_id)
    expect(page.get_by_text(CRAFTED_WALLET, exact=True).first).to_be_visible()
    expect(page.get_by_text(CRAFTED_ADDRESS, exact=True)).to_be_visible()
    expect(page.locator(".timeline .reason")).to_have_text(CRAFTED_REASON)
    page.hover(".timeline .reason")
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script, main b, main svg[onload]").count() == 0


def test_stale_stream_updates_are_dropped(new_trader, dev_node, api):
    """Stream events are applied only when their order_version is not older than the one
    on screen: an old event is ignored, a newer one shown, and a later poll of the real
    (older) order does not roll the page back. The stream is simulated here."""
    seller = Wallet.generate()
    dev_node.fund(seller.address, "100")
    status, created = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                                       price_nano_quote=10_000_000, eth_address=SELLER_ETH)
    assert status == 201
    order = api.order(created["order_id"])[1]["order"]
    stale = dict(order, order_version=1, status="locking")
    newer = dict(order, order_version=order["order_version"] + 5, status="cancelled", end_cause="cancelled")

    def sse(order_view: dict, event_id: int) -> str:
        data = json.dumps({"event": {"event_id": 10_000 + event_id, "order_id": order["order_id"],
                                     "order_version": order_view["order_version"], "kind": "transition",
                                     "from_status": "open", "to_status": order_view["status"], "actor": "bridge",
                                     "reason": f"simulated {event_id}", "node_endpoint": None,
                                     "node_outcome": None, "node_ref": None, "detail": None,
                                     "created_at": order["created_at"]}, "order": order_view})
        return f"id: {event_id}\nevent: order\ndata: {data}\n\n"

    trader = new_trader("watcher")
    sent = {"n": 0}

    def stream(route):
        sent["n"] += 1
        body = ": keep-alive\n\n" + sse(stale, 1) + (sse(newer, 2) if sent["n"] >= 2 else "")
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"},
                      body=body)

    trader.page.route(re.compile(r".*/api/stream\?.*"), stream)
    trader.open_order(order["order_id"])
    trader.expect_status("Open")  # the stale 'locking' event (version 1) was dropped
    trader.expect_status("Cancelled", timeout=15_000)  # the reconnect delivered version + 5
    page = trader.page
    shown = f"cancelled@{newer['order_version']}"
    expect(page.locator("#order-status")).to_have_attribute("data-version", str(newer["order_version"]))
    # From here on, record every status the page renders: a poll of the real (older) order
    # must not roll the page back, not even until the stream re-delivers the newer version.
    page.evaluate("""() => {
        window.__rendered = [];
        new MutationObserver(() => {
            const badge = document.getElementById('order-status');
            window.__rendered.push(`${badge?.dataset.status}@${badge?.dataset.version}`);
        }).observe(document.getElementById('order-body'),
                   {childList: true, subtree: true, characterData: true, attributes: true});
    }""")

    def polls_real_order(request) -> bool:  # reload(): the stream path never GETs the order itself
        return request.method == "GET" and request.url.endswith(f"/api/orders/{order['order_id']}")

    with page.expect_response(lambda response: polls_real_order(response.request)) as polled:
        pass  # a poll after the newer version was shown
    real = polled.value.json()["order"]
    assert real["status"] == "open" and real["order_version"] < newer["order_version"]  # older than shown
    with page.expect_request(polls_real_order):
        pass  # the poll after that one: the page has handled the answer above by now
    assert [s for s in page.evaluate("window.__rendered") if s != shown] == []
    expect(page.locator("#order-status")).to_have_attribute("data-version", str(newer["order_version"]))
    trader.expect_status("Cancelled")
    # The timeline comes from the events API (the stream only says that something changed).
    expect(trader.page.locator(".timeline")).not_to_contain_text("simulated")


def test_every_control_is_labelled_and_keyboard_works(new_trader):
    trader = new_trader("keyboard")
    page = trader.page
    for view in ("#/market", "#/wallet"):
        page.goto(f"{trader.base_url}/{view}")
        expect_view(page, view)  # its controls are all rendered
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => !e.closest('[hidden]') && !e.closest('dialog:not([open])'))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], view
    # Tab from the top of the wallet page to "Create a new wallet" and press Enter.
    page.goto(f"{trader.base_url}/#/wallet")
    page.get_by_role("button", name="Create a new wallet").wait_for()
    page.locator("body").focus()
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Create a new wallet":
            break
    page.keyboard.press("Enter")
    expect(page.locator("#wallet-address")).to_have_text(re.compile(r"^RTC[0-9a-f]{40}$"))


def test_wallet_is_kept_only_when_asked_and_can_be_deleted(new_trader):
    trader = new_trader("keeper")
    page = trader.page
    address = trader.create_wallet()
    assert page.evaluate("localStorage.length") == 0  # not kept unless asked
    expect(page.get_by_text(re.compile("Not kept: the key lives only in this tab"))).to_be_visible()
    page.get_by_role("checkbox", name="Keep this wallet in this browser").check()
    where = re.compile(r'localStorage of http://127\.0\.0\.1:\d+, entry "otc_bridge\.wallet\.v1"')
    expect(page.get_by_text(where)).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download key backup").click()
    backup = Path(info.value.path()).read_text()
    assert address in backup and re.search(r"private key: [0-9a-f]{64}", backup)
    page.reload()
    trader.nav("Wallet")
    expect(page.locator("#wallet-address")).to_have_text(address)  # restored from storage
    page.get_by_role("checkbox", name="Keep this wallet in this browser").uncheck()
    assert page.evaluate("localStorage.length") == 0
    # Import the exported key in a fresh window: same address.
    other = new_trader("importer")
    other.nav("Wallet")
    key = re.search(r"private key: ([0-9a-f]{64})", backup).group(1)
    other.page.get_by_role("textbox", name="Private key (64 hex characters)").fill(key)
    other.page.get_by_role("button", name="Import this key").click()
    expect(other.page.locator("#wallet-address")).to_have_text(address)
    # Forget needs a second click.
    forget = other.page.get_by_role("button", name="Forget this wallet")
    forget.click()
    other.page.get_by_role("button", name=re.compile("^Click again to forget")).click()
    expect(other.page.get_by_role("button", name="Create a new wallet")).to_be_visible()


def test_dev_setup_offers_the_funded_demo_wallets(new_trader):
    trader = new_trader("dev")
    trader.nav("Wallet")
    trader.page.get_by_role("button", name="Use the demo seller wallet").click()
    expect(trader.page.locator("#wallet-address")).to_have_text(Wallet.from_seed("otc-bridge demo seller").address)


def test_phone_width_layout(new_trader, dev_node, api):
    seller = Wallet.generate()
    dev_node.fund(seller.address, "100")
    for price in (48_000_000, 50_000_000, 55_000_000):
        status, _ = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=2_000_000,
                                     price_nano_quote=price, eth_address=SELLER_ETH)
        assert status == 201
    buyer = Wallet.generate()
    for price in (40_000_000, 45_000_000):
        status, _ = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=3_000_000,
                                     price_nano_quote=price)
        assert status == 201
    phone = new_trader("phone", width=375, height=812)
    page = phone.page
    expect(page.locator("#open-table tbody tr")).to_have_count(5)
    expect(page.get_by_role("img", name="Depth chart")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways page scroll
    page.get_by_role("textbox", name="Amount (RTC)", exact=True).fill("10")
    page.get_by_role("textbox", name=re.compile(r"^Price per RTC")).fill("0.05")
    expect(page.locator("#create-summary")).to_contain_text("10.5 RTC (amount + fee)")
    phone.screenshot("market-375px.png")


def test_both_traders_see_that_the_escrow_was_taken_back(new_trader, dev_node, api, seller, buyer, bridge):
    """After the escrow watch saw the job moved on the node, the order page tells whoever
    opens it, in plain words, not to lock or reveal, and to refund an HTLC after its timelock."""
    order_id, _ = matched_sell(api, seller, buyer)
    job_id = bridge.db.read_one("SELECT escrow_job_id FROM orders WHERE order_id = ?", (order_id,))[0]
    for action, body in (("deliver", {"worker_wallet": WORKER, "result_summary": "x"}),
                         ("accept", {"poster_wallet": seller.address})):
        assert dev_node.post(f"/agent/jobs/{job_id}/{action}", body).status_code == 200
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["tampered"] == 1
    trader = new_trader("buyer")
    trader.open_order(order_id)
    notice = trader.page.locator("#escrow-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("The escrow was taken back on the node")
    expect(notice).to_contain_text("refund it after its timelock")
