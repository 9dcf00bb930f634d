"""Whole swaps through the page: two people (two browser contexts), clicks and typing only.

The quote chain is simulated: the buyer's page shows the HTLC instructions, and the secret
the seller's page showed (read from its own text, or from the file it downloaded) is typed
into a confirm form with a made-up quote transaction. Between page steps Python does only
what the world around the bridge does: fund wallets on the dev node, confirm the node's
pending pool, run a reconcile pass (``otc-bridge dev`` does both every 5 s).
"""

from __future__ import annotations

import pytest
from bridge_support import ADMIN_TOKEN, SELLER_ETH
from browser_support import settle_node
from playwright.sync_api import expect

from otc_bridge.client import Wallet

pytestmark = pytest.mark.browser

FUNDED = 1_000_000_000  # 1000 RTC in micro-RTC


def two_traders(new_trader, dev_node):
    seller, buyer = new_trader("seller"), new_trader("buyer")
    for trader in (seller, buyer):
        trader.address = trader.create_wallet()
        dev_node.fund(trader.address, "1000")
        assert dev_node.balance(trader.address) == FUNDED
    return seller, buyer


def other_makers(dev_node, api) -> None:
    """A few orders of other people, so the market has a book on both sides."""
    maker = Wallet.generate()
    dev_node.fund(maker.address, "100")
    for side, micro, nano in (("sell", 2_000_000, 55_000_000), ("sell", 5_000_000, 60_000_000),
                              ("buy", 4_000_000, 45_000_000), ("buy", 8_000_000, 40_000_000)):
        status, body = api.create_order(maker, side=side, pair="RTC/USDC", amount_micro_rtc=micro,
                                        price_nano_quote=nano, eth_address=SELLER_ETH if side == "sell" else "")
        assert status == 201, body


def test_sell_order_swap_from_two_windows(new_trader, dev_node, api, stream_available):
    other_makers(dev_node, api)
    seller, buyer = two_traders(new_trader, dev_node)

    seller.place_order("sell", "10", "0.05", SELLER_ETH)
    secret = seller.save_secret()
    order_id = seller.order_id_from_url()
    seller.expect_status("Open")
    assert dev_node.balance(seller.address) == FUNDED - 10_500_000  # 10 RTC + the node's 5 % fee

    # The buyer finds it on the market (and the market shows it in book, chart and list).
    buyer.nav("Market")
    page = buyer.page
    expect(page.locator("#asks-table")).to_contain_text("0.05")
    expect(page.locator("#market-stats")).to_contain_text("Spread0.005 USDC")  # best ask 0.05 - best bid 0.045
    expect(page.get_by_role("img", name="Depth chart")).to_be_visible()
    buyer.screenshot("market.png")
    page.get_by_role("link", name="Buy: sell order of 10 RTC at 0.05").click()
    buyer.expect_status("Open")
    buyer.take()
    buyer.expect_status("Matched: waiting for settlement")
    instructions = page.get_by_role("region", name="What you lock on the USDC chain")
    expect(instructions).to_contain_text("0.5 USDC")
    expect(instructions).to_contain_text("500000")  # base units, 6 decimals
    expect(instructions).to_contain_text(SELLER_ETH)
    expect(instructions).to_contain_text(buyer.address)
    expect(instructions.locator(".countdown")).to_have_count(3)  # timelock min/max, settle by
    seller.expect_status("Matched: waiting for settlement")  # live on the seller's page too

    # The seller claims the HTLC on chain (revealing the secret); the buyer presents it.
    buyer.confirm(secret, "0xquote-tx-sell-swap")
    buyer.expect_status("Payout pending")
    settle_node(dev_node, api, ADMIN_TOKEN)
    buyer.expect_status("Completed")
    seller.expect_status("Completed")
    expect(buyer.page.locator("#revealed-secret")).to_have_text(secret)
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(page.locator(".timeline li").last).to_contain_text("completed")
    buyer.screenshot("completed-order.png")

    assert dev_node.balance(seller.address) == FUNDED - 10_500_000
    assert dev_node.balance(buyer.address) == FUNDED + 10_000_000
    for trader in (seller, buyer):
        assert trader.unexpected_console_errors(stream_available) == []
    assert order_id


def test_buy_order_swap_from_two_windows(new_trader, dev_node, api, stream_available):
    seller, buyer = two_traders(new_trader, dev_node)

    buyer.place_order("buy", "5", "0.06")
    order_id = buyer.order_id_from_url()
    buyer.expect_status("Open")

    seller.nav("Market")
    seller.page.get_by_role("link", name="Sell: buy order of 5 RTC at 0.06").click()
    seller.expect_status("Open")
    seller.take(SELLER_ETH)
    secret = seller.save_secret(via_download=True)  # the taker locks escrow and gets the secret
    seller.expect_status("Matched: waiting for settlement")
    assert dev_node.balance(seller.address) == FUNDED - 5_250_000

    buyer.expect_status("Matched: waiting for settlement")  # live: the buyer now sees what to lock
    instructions = buyer.page.get_by_role("region", name="What you lock on the USDC chain")
    expect(instructions).to_contain_text("0.3 USDC")
    expect(instructions).to_contain_text(SELLER_ETH)

    # The seller claimed the buyer's HTLC on chain with the secret, then confirms here.
    seller.confirm(secret, "0xquote-tx-buy-swap")
    seller.expect_status("Payout pending")
    buyer.expect_status("Payout pending")
    settle_node(dev_node, api, ADMIN_TOKEN)
    seller.expect_status("Completed")
    buyer.expect_status("Completed")

    assert dev_node.balance(seller.address) == FUNDED - 5_250_000
    assert dev_node.balance(buyer.address) == FUNDED + 5_000_000
    # Both see it in "My orders", completed.
    for trader in (seller, buyer):
        trader.nav("My orders")
        row = trader.page.get_by_role("row").filter(has_text=order_id)
        expect(row).to_contain_text("Completed")
        assert trader.unexpected_console_errors(stream_available) == []
    status, body = api.get("/api/trades", pair="RTC/USDC")
    assert [t["order_id"] for t in body["trades"]] == [order_id]


def test_cancel_refunds_the_escrow(new_trader, dev_node, stream_available):
    seller = new_trader("seller")
    address = seller.create_wallet()
    dev_node.fund(address, "1000")
    seller.place_order("sell", "20", "0.04", SELLER_ETH)
    seller.save_secret()
    seller.expect_status("Open")
    assert dev_node.balance(address) == FUNDED - 21_000_000
    seller.page.get_by_role("button", name="Cancel order and refund the escrow").click()
    seller.expect_status("Cancelled")
    expect(seller.page.get_by_role("status")).to_contain_text("Escrow refunded")
    assert dev_node.balance(address) == FUNDED
    assert seller.unexpected_console_errors(stream_available) == []


def test_wrong_preimage_shows_the_api_error(new_trader, dev_node, api):
    seller, buyer = two_traders(new_trader, dev_node)
    seller.place_order("sell", "1", "0.5", SELLER_ETH)
    seller.save_secret()
    order_id = seller.order_id_from_url()
    buyer.open_order(order_id)
    buyer.take(None)
    buyer.expect_status("Matched: waiting for settlement")

    buyer.confirm("ab" * 32, "0xwrong")
    assert "Invalid HTLC secret" in buyer.alert_text("confirm-error")
    secret_box = buyer.page.get_by_role("textbox", name="Secret (preimage, 64 hex characters)")
    expect(secret_box).to_have_attribute("aria-invalid", "true")
    buyer.confirm("not-a-secret", "0xwrong")
    expect(buyer.page.locator("#confirm-error")).to_contain_text("Invalid HTLC secret format")
    buyer.expect_status("Matched: waiting for settlement")  # nothing moved
    _, body = api.order(order_id)
    assert body["order"]["status"] == "matched"


def test_taking_your_own_order_and_missing_funds_show_the_api_errors(new_trader, dev_node):
    poor = new_trader("poor")
    poor.create_wallet()  # never funded
    poor.place_order("sell", "10", "0.05", SELLER_ETH)
    text = poor.alert_text("create-error")
    assert "Insufficient RTC balance" in text  # the node refused the escrow job: nothing held
    expect(poor.page.get_by_role("button", name="Sign and place sell order")).to_be_enabled()

    poor.place_order("buy", "2", "0.05")
    order_id = poor.order_id_from_url()
    poor.expect_status("Open")
    # The maker is offered Cancel, not Take; the API's own refusal still shows if forced.
    expect(poor.page.get_by_role("button", name="Cancel order")).to_be_visible()
    expect(poor.page.get_by_role("button", name="Sign and take this order")).to_have_count(0)
    assert order_id
