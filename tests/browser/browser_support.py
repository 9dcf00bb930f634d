"""Driving the trading page like a person: a ``Trader`` wraps one browser page and only
clicks, types and reads what is on screen (accessible roles and labels, which also proves
every control is labelled). Python steps in only where the real world would: funding a
wallet on the dev node, the node operator confirming the pending pool, the reconciler."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
LIVE_TIMEOUT_MS = 20_000  # stream or 3 s polling: a page must show a change well within this


class Trader:
    """One person at one browser window of the page."""

    def __init__(self, page: Page, base_url: str, name: str) -> None:
        self.page, self.base_url, self.name = page, base_url, name
        self.console_errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} @ {message.location.get('url', '')}")

    # -- navigation --------------------------------------------------------------------
    def open(self, fragment: str = "#/market"):
        response = self.page.goto(f"{self.base_url}/{fragment}")
        expect(self.page.get_by_role("heading", level=1).first).to_be_visible()
        return response

    def nav(self, name: str) -> None:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(f"^{name}")).click()

    # -- wallet ------------------------------------------------------------------------
    def create_wallet(self) -> str:
        self.nav("Wallet")
        self.page.get_by_role("button", name="Create a new wallet").click()
        address = self.page.locator("#wallet-address")
        expect(address).to_have_text(re.compile(r"^RTC[0-9a-f]{40}$"))
        return address.text_content()

    # -- market ------------------------------------------------------------------------
    def place_order(self, side: str, amount: str, price: str, quote_address: str | None = None) -> str:
        """Fill the order form and sign; returns the new order id (from the page's URL)."""
        self.nav("Market")
        page = self.page
        page.get_by_role("radio", name="Sell RTC" if side == "sell" else "Buy RTC").check()
        page.get_by_role("textbox", name="Amount (RTC)", exact=True).fill(amount)
        page.get_by_role("textbox", name=re.compile(r"^Price per RTC")).fill(price)
        if quote_address is not None:
            page.get_by_role("textbox", name=re.compile(r"^Your \w+ address")).fill(quote_address)
        summary = page.locator("#create-summary")
        expect(summary).to_contain_text("Node's 5 % escrow fee")
        page.get_by_role("button", name=f"Sign and place {side} order").click()
        return ""

    def order_id_from_url(self) -> str:
        self.page.wait_for_url(re.compile(r"#/order/otc_[0-9a-f]+$"))
        return self.page.url.rsplit("/", 1)[1]

    # -- the one-time secret -----------------------------------------------------------
    def save_secret(self, via_download: bool = False, *, buyer_held: bool = False) -> str:
        """Read the secret the dialog shows (or the downloaded file), acknowledge, continue.
        ``buyer_held``: the RTC buyer's own preimage, made by the page (a dialog of its own)."""
        title, ack = ("Save your preimage", "^I have saved a copy") if buyer_held \
            else ("Save this secret now", "^I have saved this secret")
        dialog = self.page.get_by_role("dialog", name=title)
        expect(dialog).to_be_visible()
        cont = dialog.get_by_role("button", name="Continue")
        expect(cont).to_be_disabled()  # refuses to go on before the acknowledgement
        secret = dialog.get_by_role("textbox", name=re.compile(r"^Secret")).input_value()
        if via_download:
            with self.page.expect_download() as info:
                dialog.get_by_role("button", name="Download as a file").click()
            text = Path(info.value.path()).read_text()
            secret = re.search(r"secret:\s+([0-9a-f]{64})", text).group(1)
        assert re.fullmatch(r"[0-9a-f]{64}", secret), secret
        dialog.get_by_role("checkbox", name=re.compile(ack)).check()
        expect(cont).to_be_enabled()
        cont.click()
        expect(dialog).to_be_hidden()
        return secret

    # -- one order ---------------------------------------------------------------------
    def open_order(self, order_id: str) -> None:
        self.page.goto(f"{self.base_url}/#/order/{order_id}")
        expect(self.page.get_by_role("heading", name=re.compile(r"^Status: "))).to_be_visible()

    def expect_status(self, label: str, timeout: int = LIVE_TIMEOUT_MS) -> None:
        expect(self.page.get_by_role("heading", name=f"Status: {label}")).to_be_visible(timeout=timeout)

    def take(self, quote_address: str | None = None) -> None:
        page = self.page
        if quote_address is not None:
            page.get_by_role("textbox", name=re.compile(r"^Your \w+ address")).fill(quote_address)
        page.get_by_role("button", name="Sign and take this order").click()

    def confirm(self, secret: str, quote_tx: str) -> None:
        page = self.page
        page.get_by_role("textbox", name=re.compile(r"^Secret \(preimage")).fill(secret)
        page.get_by_role("textbox", name=re.compile(r"transaction \(the HTLC")).fill(quote_tx)
        page.get_by_role("button", name="Confirm settlement and release the RTC").click()

    def alert_text(self, box_id: str) -> str:
        box = self.page.locator(f"#{box_id}")
        expect(box).to_be_visible()
        return box.text_content()

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        OUTPUT.mkdir(exist_ok=True)
        path = OUTPUT / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def unexpected_console_errors(self, stream_available: bool) -> list[str]:
        """Console errors, less the 404 of /api/stream while the stream is not deployed."""
        return [e for e in self.console_errors if stream_available or "/api/stream" not in e]


def settle_node(dev_node, api, admin_token: str) -> None:
    """What `otc-bridge dev` does every 5 s: the node confirms its pending pool, then the
    bridge's reconciler completes the orders whose payout is now final."""
    assert dev_node.confirm_pending() >= 1
    status, body = api.reconcile(admin_token)
    assert status == 200, body
