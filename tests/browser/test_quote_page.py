"""The buyer-held mode from the page, on the dev chain (anvil, docs/protocol.md §12.5).

The bridge here watches the session's anvil (each test in a chain snapshot that is
reverted), and the page reaches the chain through the bridge's dev-only relay
(``POST /dev/evm-rpc``), sending from anvil's unlocked demo buyer account, as it does
under ``otc-bridge dev``. Python does only what the world around the bridge does: fund
RTC wallets on the dev node, run reconcile passes (the chain watcher and the bridge's
claim), confirm the node's pending pool, and move the chain's clock.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from bridge_support import ADMIN_TOKEN, bridge_env
from browser_support import LIVE_TIMEOUT_MS, settle_node
from chain_support import dev_chain, evm  # noqa: F401  (fixtures)
from eth_utils import keccak
from playwright.sync_api import expect

from otc_bridge.api import web
from otc_bridge.app import create_app
from otc_bridge.config import Config
from otc_bridge.domain import money

pytestmark = pytest.mark.browser

FUNDED = 1_000_000_000  # 1000 RTC in micro-RTC


@pytest.fixture
def bridge_config(request, tmp_path, dev_node, evm):  # noqa: F811  (evm is a fixture)
    """The test bridge watching the dev chain (confirmations 0), with the claimer's key
    unless the test parametrizes this fixture (indirect) with ``False``.

    This bridge and the page run on wall time (signatures, ``matched_at``), as under
    ``otc-bridge dev``; reverting a snapshot sets anvil's clock back by as long as the
    previous test ran, so the chain is put back on wall time first (a lock mined "before"
    the match would not count)."""
    evm.rpc("evm_setTime", hex(int(time.time())))
    env = evm.env()
    if not getattr(request, "param", True):
        del env["OTC_EVM_CLAIMER_KEY"]  # the bridge never claims: the seller does, from the page
    return Config.from_env(bridge_env(tmp_path, dev_node.url, **env))


def reconcile(api) -> dict:
    status, body = api.reconcile(ADMIN_TOKEN)
    assert status == 200 and body["summary"]["errors"] == 0 and body["summary"]["skipped_locked"] == 0, body
    return body["summary"]


def traders(new_trader, dev_node):
    seller, buyer = new_trader("seller"), new_trader("buyer")
    for trader in (seller, buyer):
        trader.address = trader.create_wallet()
        dev_node.fund(trader.address, "1000")
    return seller, buyer


def kept_preimages(trader) -> dict:
    return trader.page.evaluate("""() => Object.fromEntries(Object.keys(localStorage)
        .filter((k) => k.startsWith('otc_bridge.preimage.v1.')).map((k) => [k, JSON.parse(localStorage[k])]))""")


def test_calldata_selectors_and_page_config_match_the_chain(new_trader, evm, live_bridge, api):  # noqa: F811
    """The page's hard-coded selectors and its ABI encoding equal web3's; the page config
    names the dev chain's demo accounts; the relay refuses what it must."""
    trader = new_trader("encoder")
    htlc = evm.htlc.contract
    seller, token = evm.accounts["seller"].address, evm.usdc.address
    hashlock, swap_id = "0x" + "ab" * 32, "0x" + "cd" * 32
    order_id = "otc_0123456789abcdef-é"  # a non-ASCII byte string exercises the UTF-8 padding
    got = trader.page.evaluate("""async ([seller, token, hashlock, swapId, orderId, htlc]) => {
        const m = await import('/static/js/evm.js');
        return {
          eth: m.createSwapEthData({seller, hashlock, timelock: 1800000000, orderId}),
          erc20: m.createSwapErc20Data({seller, token, amount: 123456789012345678901234567890n, hashlock,
                                        timelock: 1800000001, orderId}),
          refund: m.refundData(swapId), approve: m.approveData(htlc, '1000000'),
          claim: m.claimData(swapId, hashlock.slice(2)), claim0x: m.claimData(swapId, hashlock),
          selectors: m.SELECTORS, topic: m.SWAP_CREATED_TOPIC,
        };
    }""", [seller, token, hashlock, swap_id, order_id, evm.htlc.address])
    h = bytes.fromhex(hashlock[2:])
    assert got["eth"] == htlc.encode_abi("createSwapETH", args=[seller, h, 1800000000, order_id])
    big = 123456789012345678901234567890
    assert got["erc20"] == htlc.encode_abi("createSwapERC20", args=[seller, token, big, h, 1800000001, order_id])
    assert got["refund"] == htlc.encode_abi("refund", args=[bytes.fromhex(swap_id[2:])])
    assert got["approve"] == evm.usdc.contract.encode_abi("approve", args=[evm.htlc.address, 1_000_000])
    assert got["claim"] == got["claim0x"] == htlc.encode_abi("claim", args=[bytes.fromhex(swap_id[2:]), h])
    signatures = {"createSwapETH": "createSwapETH(address,bytes32,uint256,string)",
                  "createSwapERC20": "createSwapERC20(address,address,uint256,bytes32,uint256,string)",
                  "claim": "claim(bytes32,bytes32)", "refund": "refund(bytes32)", "approve": "approve(address,uint256)"}
    assert got["selectors"] == {name: "0x" + keccak(text=sig)[:4].hex() for name, sig in signatures.items()}
    assert got["topic"] == "0x" + keccak(
        text="SwapCreated(bytes32,address,address,address,uint256,bytes32,uint256,string)").hex()

    _, config = api.get("/page-config.json")
    assert config["dev_chain"] == {"rpc_path": "/dev/evm-rpc", "accounts": {
        role: evm.accounts[role].address for role in ("seller", "buyer")}}
    assert config["dev_chain"]["accounts"] == web._DEV_CHAIN_ACCOUNTS
    assert config["quote_chain"]["evm_pairs"] == ["RTC/ETH", "RTC/USDC"]
    assert config["quote_chain"]["htlc_contract"] == evm.htlc.address
    assert config["quote_chain"]["bridge_claims"] is True  # OTC_EVM_CLAIMER_KEY is set; the key is never shown
    assert evm.accounts["claimer"].private_key.lower().removeprefix("0x") not in str(config).lower()

    def relay(method, params):
        return api.session.post(f"{live_bridge}/dev/evm-rpc", json={"jsonrpc": "2.0", "id": 7, "method": method,
                                                                    "params": params}, timeout=30).json()

    assert int(relay("eth_chainId", [])["result"], 16) == 31337
    assert "not relayed" in relay("anvil_setBalance", [seller, "0x1"])["error"]["message"]
    claimer = evm.accounts["claimer"].address  # the bridge's hot key: never sent from by the page
    refused = relay("eth_sendTransaction", [{"from": claimer, "to": seller, "value": "0x1"}])
    assert "demo accounts" in refused["error"]["message"]


def test_buyer_held_eth_swap_from_the_page(new_trader, dev_node, api, evm, stream_available):  # noqa: F811
    seller, buyer = traders(new_trader, dev_node)
    seller_eth, buyer_eth = evm.accounts["seller"].address, evm.accounts["buyer"].address
    due = money.total_quote_base_units(10_000_000, 2_000_000, 18)  # 10 RTC at 0.002 ETH: 0.02 ETH in wei

    seller.open("#/market/RTC%2FETH")
    seller.place_order("sell", "10", "0.002", seller_eth)
    seller.save_secret()  # made by the bridge at create; the buyer's hashlock voids it below
    order_id = seller.order_id_from_url()
    seller.expect_status("Open")

    # The buyer takes it: the page makes the preimage, sends only its sha256 (signed).
    buyer.open_order(order_id)
    buyer.take()
    preimage = buyer.save_secret(buyer_held=True)
    buyer.expect_status("Matched: waiting for settlement")
    _, body = api.order(order_id)
    order = body["order"]
    assert order["preimage_holder"] == "buyer" and order["seller_secret_void"] is True
    assert order["htlc_hash"] == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    assert "htlc_secret" not in order
    kept = kept_preimages(buyer)[f"otc_bridge.preimage.v1.{order['htlc_hash']}"]
    assert kept["preimage"] == preimage and kept["order_id"] == order_id
    seller.expect_status("Matched: waiting for settlement")
    expect(seller.page.locator(".status-card")).to_contain_text("void for this match")

    # Lock from the page (the dev chain: the demo buyer account), then the watcher's pass.
    card = buyer.page.get_by_role("region", name="Quote leg on the ETH chain")
    expect(card.locator("#quote-leg-state")).to_have_text("Waiting for the buyer's lock")
    buyer_eth_before = evm.w3.eth.get_balance(buyer_eth)
    card.get_by_role("button", name="Lock 0.02 ETH in the HTLC").click()
    expect(card.locator("#quote-lock-sent")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    lock_tx = card.locator("#quote-lock-tx").text_content()
    receipt = evm.w3.eth.get_transaction_receipt(lock_tx)
    created = evm.htlc.receipt_events(receipt)[0]
    assert (created.buyer, created.seller, created.amount) == (buyer_eth, seller_eth, due)
    assert created.rtc_order_id == order_id
    lock_block = evm.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert lock_block + 4 * 3600 <= created.timelock <= lock_block + 24 * 3600  # inside the buyer-held range
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert evm.w3.eth.get_balance(buyer_eth) == buyer_eth_before - due - gas

    assert reconcile(api)["quote_leg_changes"] == 1
    expect(card.locator("#quote-leg-state")).to_have_text("Locked: verified by the bridge", timeout=LIVE_TIMEOUT_MS)
    expect(seller.page.locator("#quote-leg-state")).to_have_text("Locked: verified by the bridge",
                                                                 timeout=LIVE_TIMEOUT_MS)
    expect(card).to_contain_text("0x" + created.swap_id.hex())
    expect(card.locator(".countdown")).to_have_count(2)  # the timelock and the reveal deadline
    buyer.screenshot("buyer-held-locked.png")

    # Reveal in the page: the signed confirm with the kept preimage.
    card.get_by_role("button", name="Reveal the preimage and release the RTC").click()
    buyer.expect_status("Payout pending")
    seller.expect_status("Payout pending")
    seller_card = seller.page.get_by_role("region", name="Quote leg on the ETH chain")
    expect(seller_card.locator("#quote-leg-state")).to_have_text("Locked: verified by the bridge")
    expect(seller.page.locator("#revealed-secret")).to_have_text(preimage)  # shown to the seller from payout_pending
    expect(seller_card.get_by_role("button", name="Claim the ETH now")).to_have_count(0)  # the bridge claims
    seller_eth_before = evm.w3.eth.get_balance(seller_eth)
    assert reconcile(api)["quote_claims_sent"] == 1  # the bridge claims for the seller
    reconcile(api)  # the claim was mined (automine): the watcher records it
    claimed = seller.page.locator("#quote-claimed")
    expect(claimed).to_contain_text("Claimed for you", timeout=LIVE_TIMEOUT_MS)
    expect(claimed).to_contain_text("0.02 ETH")
    claim_tx = seller.page.locator("#quote-claim-tx").text_content()
    assert re.fullmatch(r"0x[0-9a-f]{64}", claim_tx)
    assert claim_tx in claimed.text_content()
    claim = evm.w3.eth.get_transaction_receipt(claim_tx)
    assert claim["from"] == evm.accounts["claimer"].address  # the seller paid no gas
    assert evm.w3.eth.get_balance(seller_eth) == seller_eth_before + due

    settle_node(dev_node, api, ADMIN_TOKEN)
    buyer.expect_status("Completed")
    seller.expect_status("Completed")
    expect(buyer.page.locator("#revealed-secret")).to_have_text(preimage)
    assert dev_node.balance(seller.address) == FUNDED - 10_500_000  # 10 RTC + the node's 5 % fee
    assert dev_node.balance(buyer.address) == FUNDED + 10_000_000
    expect(card).to_contain_text(f"Your lock was claimed for the seller in transaction {claim_tx}")
    assert kept_preimages(buyer) == {}  # public now: the page forgot it
    buyer.screenshot("buyer-held-completed.png")
    for trader in (seller, buyer):
        assert trader.unexpected_console_errors(stream_available) == []


@pytest.mark.parametrize(("bridge_config", "bridge_too_late"), [(False, False), (True, True)],
                         indirect=["bridge_config"], ids=["no-claimer-key", "bridge-claimer-past-its-margin"])
def test_seller_claims_from_the_page(new_trader, dev_node, api, evm, stream_available,  # noqa: F811
                                     bridge_config, bridge_too_late):
    """The RTC seller claims the buyer's lock from the order page with the preimage the order
    view shows once the payout is committed: the main action on a bridge without a claimer
    key, a secondary fallback on one whose claim window (timelock - margin) has passed. It is
    sent from the dev chain's demo seller account, which pays the gas."""
    _, config = api.get("/page-config.json")
    assert config["quote_chain"]["bridge_claims"] is bridge_too_late
    seller, buyer = traders(new_trader, dev_node)
    seller.page.get_by_role("checkbox", name="Keep this wallet in this browser").check()  # survives a reload
    seller_eth = evm.accounts["seller"].address
    due = money.total_quote_base_units(10_000_000, 2_000_000, 18)  # 0.02 ETH in wei

    seller.open("#/market/RTC%2FETH")
    seller.place_order("sell", "10", "0.002", seller_eth)
    seller.save_secret()
    order_id = seller.order_id_from_url()
    buyer.open_order(order_id)
    buyer.take()
    preimage = buyer.save_secret(buyer_held=True)
    card = buyer.page.get_by_role("region", name="Quote leg on the ETH chain")
    card.get_by_role("button", name="Lock 0.02 ETH in the HTLC").click()
    expect(card.locator("#quote-lock-sent")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    reconcile(api)
    reveal = card.get_by_role("button", name="Reveal the preimage and release the RTC")
    expect(reveal).to_be_enabled(timeout=LIVE_TIMEOUT_MS)
    reveal.click()
    buyer.expect_status("Payout pending")
    expect(card.get_by_role("button", name="Claim the ETH now")).to_have_count(0)  # the buyer has nothing to claim

    seller_card = seller.page.get_by_role("region", name="Quote leg on the ETH chain")
    claim_button = seller_card.get_by_role("button", name="Claim the ETH now")
    _, body = api.order(order_id)
    leg = body["order"]["quote_leg"]
    if bridge_too_late:
        # The bridge would claim, but chain time passes timelock - margin first: it stops
        # (alert quote_claim_late) and the seller's page offers the claim as a fallback.
        seller.expect_status("Payout pending")
        expect(seller_card.locator("#quote-leg-state")).to_have_text("Locked: verified by the bridge")
        expect(claim_button).to_have_count(0)
        evm.increase_time(leg["timelock"] - config["quote_chain"]["buyer_margin_seconds"] - evm.latest_timestamp() + 1)
        seller.page.reload()  # a fresh page reads the chain's clock at once
        seller_card = seller.page.get_by_role("region", name="Quote leg on the ETH chain")
        claim_button = seller_card.get_by_role("button", name="Claim the ETH now")
    assert reconcile(api).get("quote_claims_sent", 0) == 0  # no key, or too late: the bridge sends nothing
    expect(claim_button).to_be_enabled(timeout=LIVE_TIMEOUT_MS)
    expect(claim_button).to_have_class("secondary" if bridge_too_late else "primary")
    expect(seller.page.locator("#revealed-secret")).to_have_text(preimage)
    expect(seller_card.locator("#quote-claim-why")).to_contain_text("0.02 ETH")
    countdown = seller_card.locator("#quote-claim-deadline .countdown")  # to the timelock, live
    expect(countdown).to_have_attribute("data-chain-time", str(leg["timelock"]))
    if bridge_too_late:  # counted on the chain's clock: under the margin left, not the wall-clock hours
        expect(countdown).to_have_text(re.compile(r"^\(in 1 h [0-9]+ min\)$"))
    expect(seller.page.locator(".status-card")).to_contain_text("Claim the buyer's HTLC now")
    expect(seller_card.locator("#quote-claim-why")).to_contain_text(f"demo seller account {seller_eth}")
    seller.screenshot(f"seller-claim-{'fallback' if bridge_too_late else 'no-claimer'}.png")

    seller_eth_before = evm.w3.eth.get_balance(seller_eth)
    claim_button.click()
    sent = seller_card.locator("#quote-claim-sent")
    expect(sent).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    claim_tx = re.search(r"0x[0-9a-f]{64}", sent.text_content()).group(0)
    receipt = evm.w3.eth.get_transaction_receipt(claim_tx)
    assert receipt["status"] == 1 and receipt["from"] == seller_eth and receipt["to"] == evm.htlc.address
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert evm.w3.eth.get_balance(seller_eth) == seller_eth_before + due - gas

    assert reconcile(api)["quote_leg_changes"] == 1  # the watcher records the seller's SwapClaimed
    expect(seller_card.locator("#quote-leg-state")).to_have_text("Claimed: the seller is paid", timeout=LIVE_TIMEOUT_MS)
    expect(seller_card.locator("#quote-claim-tx")).to_have_text(claim_tx)
    expect(seller_card.locator("#quote-claimed")).to_contain_text(f"You claimed the buyer's HTLC, which paid 0.02 ETH "
                                                                  f"to your address, in transaction {claim_tx}")
    expect(claim_button).to_have_count(0)
    _, body = api.order(order_id)
    assert body["order"]["quote_leg"]["claim_tx"] == claim_tx
    settle_node(dev_node, api, ADMIN_TOKEN)
    seller.expect_status("Completed")
    buyer.expect_status("Completed")
    assert dev_node.balance(buyer.address) == FUNDED + 10_000_000
    for trader in (seller, buyer):
        assert trader.unexpected_console_errors(stream_available) == []


def test_buyer_held_usdc_buy_order_locked_then_refunded(new_trader, dev_node, api, evm, stream_available):  # noqa: F811
    """A buy order placed from the page is buyer-held too; its USDC lock (approve, then
    createSwapERC20) is refunded from the page once the chain passes the timelock."""
    seller, buyer = traders(new_trader, dev_node)
    buyer.page.get_by_role("checkbox", name="Keep this wallet in this browser").check()  # survives the reload below
    buyer_usdc = evm.accounts["buyer"].address
    due = money.total_quote_base_units(5_000_000, 60_000_000, 6)  # 5 RTC at 0.06 USDC: 300000 base units

    buyer.open("#/market/RTC%2FUSDC")
    buyer.place_order("buy", "5", "0.06")
    preimage = buyer.save_secret(buyer_held=True)
    order_id = buyer.order_id_from_url()
    buyer.expect_status("Open")
    _, body = api.order(order_id)
    assert body["order"]["htlc_hash"] == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()

    seller.open_order(order_id)
    expect(seller.page.get_by_role("region", name="Sell your RTC to this buyer")).to_contain_text(
        "claims it for you once the buyer reveals")
    seller.take(evm.accounts["seller"].address)  # no secret for the seller: the buyer holds it
    seller.expect_status("Matched: waiting for settlement")
    buyer.expect_status("Matched: waiting for settlement")

    card = buyer.page.get_by_role("region", name="Quote leg on the USDC chain")
    before = evm.usdc.balance_of(buyer_usdc)
    card.get_by_role("button", name="Lock 0.3 USDC in the HTLC").click()
    expect(card.locator("#quote-lock-sent")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert evm.usdc.balance_of(buyer_usdc) == before - due
    reconcile(api)
    expect(card.locator("#quote-leg-state")).to_have_text("Locked: verified by the bridge", timeout=LIVE_TIMEOUT_MS)
    expect(card.get_by_role("button", name="Refund my HTLC")).to_have_count(0)  # not before the timelock

    # The buyer never reveals. Once chain time passes the timelock, the page offers the refund.
    _, body = api.order(order_id)
    evm.increase_time(body["order"]["quote_leg"]["timelock"] - evm.latest_timestamp() + 1)
    buyer.page.reload()
    card = buyer.page.get_by_role("region", name="Quote leg on the USDC chain")
    expect(card.get_by_role("button", name="Reveal the preimage and release the RTC")).to_be_disabled()
    card.get_by_role("button", name="Refund my HTLC").click()
    expect(card).to_contain_text("Refund sent in transaction", timeout=LIVE_TIMEOUT_MS)
    assert evm.usdc.balance_of(buyer_usdc) == before
    reconcile(api)
    expect(card.locator("#quote-leg-state")).to_have_text("Refunded to the buyer", timeout=LIVE_TIMEOUT_MS)
    assert kept_preimages(buyer) == {}
    assert dev_node.balance(buyer.address) == FUNDED  # no RTC moved: the escrow waits for settle_by
    for trader in (seller, buyer):
        assert trader.unexpected_console_errors(stream_available) == []


def test_production_page_gets_the_chain_terms_but_no_relay(bridge):
    """Against a real node the page learns the chain id and contracts (for the trader's own
    wallet), never an RPC endpoint, and the relay does not exist."""
    bridge.config = bridge.config.replace(node_admin_key="a-real-operator-key-0123456789")
    client = create_app(bridge=bridge).test_client()
    body = client.get("/page-config.json").get_json()
    assert body["dev"] is False and body["dev_chain"] is None
    assert body["quote_chain"]["chain_id"] == 31337 and "rpc" not in str(body["quote_chain"]).lower()
    assert client.post("/dev/evm-rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).status_code == 404
