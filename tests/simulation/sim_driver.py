"""A seeded random simulation of the bridge against the dev node: traders, faults, crashes.

``Simulation(seed, ...).run(steps)`` drives one ``random.Random(seed)`` through ``steps``
actions (weights in :data:`ACTIONS`): create sell/buy orders with random amounts, prices,
pairs and TTLs; match; confirm with the right or a wrong preimage; cancel; move time
(the bridge's clock and the dev node's ``/dev/clock``); confirm the node's pending pool;
run a reconcile pass; arm a fault on a random node call for one hit; and crash an
operation at a random crash point (``otc_bridge.crashpoints.set_hook`` raising
:class:`SimulatedCrash`, a ``BaseException``, so the operation stops there as a killed
process would and the driver catches it).

Operations go over HTTP to the live bridge half of the time and to the services
in-process otherwise; a crashed operation always runs in-process, so the exception reaches
the driver rather than the WSGI server. After every step the invariants of
``ledger_checks`` are checked (node conservation, per-order invariants, payouts, jobs,
preimage visibility), and :meth:`Simulation.finish` stops the faults, lets the reconciler
settle everything and checks the books to the micro-RTC.

Any failure raises :class:`SimulationFailed` naming the seed and step, with the recent
steps, so ``OTC_SIM_SEED=<seed> pytest tests/simulation`` replays it. Replays are exact up
to wall-clock effects: the bridge's clock is fully simulated (one second per step plus
explicit moves), the dev node's clock follows the wall clock plus the same moves.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass

import requests
from bridge_support import violations_of
from ledger_checks import (
    GRACE_SECONDS,
    NodeBook,
    ShiftedClock,
    advance,
    ledger_problems,
    orders,
    preimage_problems,
    released_unpaid,
    rest_problems,
    settle,
)

from otc_bridge import crashpoints
from otc_bridge.client import Wallet
from otc_bridge.domain.errors import BridgeError
from otc_bridge.domain.status import Status
from otc_bridge.settlement import reconcile
from otc_bridge.trading import cancel, confirm, create, match

MICRO = 1_000_000
FUNDED_RTC = 20_000
PAIRS = ("RTC/USDC", "RTC/ETH")
TTLS = (3600, 2 * 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
NODE_CALLS = ("POST /agent/jobs", "GET /agent/jobs", "GET /agent/jobs/<job_id>",
              "POST /agent/jobs/<job_id>/claim", "POST /agent/jobs/<job_id>/deliver",
              "POST /agent/jobs/<job_id>/accept", "POST /agent/jobs/<job_id>/dispute",
              "POST /agent/jobs/<job_id>/cancel", "POST /wallet/transfer", "GET /wallet/tx/<tx_hash>")
FAULT_KINDS = (
    {"kind": "timeout_after", "latency_ms": 1500},  # past the bridge's 1 s read timeout
    {"kind": "drop_before"},
    {"kind": "error_5xx", "status": 500},
    {"kind": "error_5xx", "status": 503, "html": True},
    {"kind": "rate_limit"},
    {"kind": "latency", "latency_ms": 200},
)
CRASH_CALLS = ("create_job", "list_jobs", "get_job", "claim", "deliver", "accept", "dispute", "cancel",
               "transfer", "tx_status")
CRASH_POINTS = tuple(f"{when}:{call}" for call in CRASH_CALLS for when in ("before", "after")) + tuple(
    f"after_commit:{status}" for status in Status)
#: Action name -> weight.
ACTIONS = {"create_sell": 16, "create_buy": 10, "match": 16, "confirm": 13, "confirm_wrong": 2, "cancel": 6,
           "advance_time": 8, "confirm_pool": 6, "reconcile": 8, "fault": 6, "crash": 7}
#: The longest stretch of simulated time without a reconcile pass (the bridge's timer).
MAX_RECONCILE_GAP_SECONDS = 6 * 3600
MUTATIONS = ("create_sell", "create_buy", "match", "confirm", "cancel", "reconcile")


class SimulatedCrash(BaseException):
    """Raised by the crash hook: the operation stops at that point as if the process died."""


class SimulationFailed(AssertionError):
    """An invariant broke; the message carries the seed, the step and how to replay."""


@dataclass
class Outcome:
    """What the trader saw: an HTTP-like code and body, or a crash at ``crashed_at``."""

    code: int | None
    body: dict
    crashed_at: str | None = None


class _ErrorLog(logging.Handler):
    """Collects ERROR records of the bridge (not of the dev node): each one is a finding."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("otc_bridge.dev.node"):
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.records.append(f"{record.name}: {text}")


class Simulation:
    """One seeded run against a live bridge (``bridge`` served at ``api.base_url``) and a dev node."""

    def __init__(self, seed: int, *, bridge, dev_node, api, node_db_path, wallets: int = 8,
                 steps_hint: int | None = None, strict: bool = False) -> None:
        self.seed = seed
        self.strict = strict  # False: tolerate (and report) the known unsent-payout bug
        self.known_bug_orders: set[str] = set()
        self.steps_hint = steps_hint
        self.rng = random.Random(seed)
        self.bridge, self.dev_node, self.api, self.node_db_path = bridge, dev_node, api, node_db_path
        start = int(time.time())
        bridge.clock = ShiftedClock(lambda: start)  # fully simulated: moves only when we say
        self.wallets = [Wallet.from_seed(f"otc-sim:{seed}:{i}") for i in range(wallets)]
        self.funded: dict[str, int] = {}
        for wallet in self.wallets:
            dev_node.fund(wallet.address, str(FUNDED_RTC))
            self.funded[wallet.address] = FUNDED_RTC * MICRO
        self.secrets: dict[str, str] = {}  # order_id -> the latest preimage a trader holds
        self.versions: dict[str, int] = {}
        self.job_owner: dict[str, str] = {}
        self.recent: deque[str] = deque(maxlen=25)
        self.stats: Counter[str] = Counter()
        self.step = 0
        self.errors = _ErrorLog()
        self.session = requests.Session()

    # -- running ----------------------------------------------------------------------

    def run(self, steps: int) -> None:
        logger = logging.getLogger("otc_bridge")
        logger.addHandler(self.errors)
        try:
            for self.step in range(1, steps + 1):
                self.bridge.clock.offset += 1  # distinct signature timestamps, step after step
                action = self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
                description = getattr(self, f"do_{action}")()
                self.stats[action] += 1
                self.recent.append(f"step {self.step}: {description}")
                self.check()
        finally:
            crashpoints.set_hook(None)
            logger.removeHandler(self.errors)

    def fail(self, problems: list[str] | str) -> None:
        problems = [problems] if isinstance(problems, str) else problems
        steps = f" OTC_SIM_STEPS={self.steps_hint}" if self.steps_hint else ""
        raise SimulationFailed(
            f"simulation seed={self.seed} failed at step {self.step}\n"
            f"replay: OTC_SIM_SEED={self.seed}{steps} pytest tests/simulation\n"
            + "\n".join(f"  ! {p}" for p in problems)
            + "\nrecent steps:\n" + "\n".join(f"  {line}" for line in self.recent)
            + self.histories(re.findall(r"otc_[0-9a-f]{16}", "\n".join(problems))))

    def histories(self, order_ids: list[str], limit: int = 3) -> str:
        """The audit trail of the first orders a failure names (the bridge's order_events)."""
        out = []
        for order_id in list(dict.fromkeys(order_ids))[:limit]:
            out.append(f"\nhistory of {order_id}:")
            for e in self.bridge.db.read("SELECT * FROM order_events WHERE order_id = ? ORDER BY event_id",
                                         (order_id,)):
                move = f"{e['from_status']}->{e['to_status']}" if e["kind"] == "transition" else e["kind"]
                node = f" [{e['node_endpoint']} {e['node_outcome']} {e['detail'] or ''}]" if e["node_endpoint"] else ""
                out.append(f"  t={e['created_at']} v{e['order_version']} {move} {e['actor']}: {e['reason']}{node}")
        return "\n".join(out)

    # -- choosing -----------------------------------------------------------------------

    def wallet(self) -> Wallet:
        return self.rng.choice(self.wallets)

    def owner(self, address: str) -> Wallet | None:
        return next((w for w in self.wallets if w.address == address), None)

    def pick_order(self, statuses: tuple[str, ...], bias: float = 0.85, need_secret: bool = False):
        """An order in one of ``statuses`` (with probability ``bias``, if any), else any order;
        chosen by creation order, never by id, so a seed replays the same choices."""
        rows = self.bridge.db.read("SELECT * FROM orders ORDER BY rowid")
        if need_secret:
            rows = [r for r in rows if self.secret_for(r)]
        if not rows:
            return None
        wanted = [r for r in rows if r["status"] in statuses]
        return self.rng.choice(wanted if wanted and self.rng.random() < bias else rows)

    def secret_for(self, order) -> str | None:
        secret = self.secrets.get(order["order_id"])
        if secret and order["htlc_hash"] == hashlib.sha256(bytes.fromhex(secret)).hexdigest():
            return secret
        return None

    def address(self) -> str:
        return "0x" + "".join(self.rng.choice("0123456789abcdef") for _ in range(40))

    # -- transport: HTTP or in-process, the crash hook only in-process -----------------

    def transport(self, crash_at: str | None = None) -> str:
        return "inproc" if crash_at or self.rng.random() < 0.5 else "http"

    def http(self, path: str, body: dict) -> Outcome:
        response = self.session.post(self.api.base_url + path, json=body, timeout=60)
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:300]}
        if response.status_code >= 500 and response.status_code not in (502, 503):
            self.fail(f"POST {path} answered {response.status_code}: {payload}")
        if "htlc_secret" in payload and payload.get("status") != Status.COMPLETED:
            issued = (path == "/api/orders" and response.status_code == 201) or (
                path.endswith("/match") and response.status_code == 200)
            if not issued:
                self.fail(f"POST {path} showed the preimage in a {response.status_code} answer: {payload}")
        return Outcome(response.status_code, payload)

    def inproc(self, call, crash_at: str | None) -> Outcome:
        """Run ``call`` with the crash hook armed for ``crash_at``: a point name (crash at its
        first occurrence) or ``"#<n>"`` (crash at the n-th crash point reached, whatever it is)."""
        reached: list[str] = []

        def hook(name: str) -> None:
            reached.append(name)
            if name == crash_at or crash_at == f"#{len(reached)}":
                raise SimulatedCrash(name)

        crashpoints.set_hook(hook if crash_at else None)
        try:
            return Outcome(200, call())
        except SimulatedCrash as crash:
            self.stats[f"crash fired at {crash}"] += 1
            return Outcome(None, {}, crashed_at=str(crash))
        except BridgeError as exc:
            return Outcome(exc.status, exc.body())
        except Exception:
            self.fail(f"unexpected exception from the services:\n{traceback.format_exc()}")
            raise  # unreachable: fail() raises
        finally:
            crashpoints.set_hook(None)

    def signed(self, wallet: Wallet, action: str, order_id: str, bound: dict) -> dict:
        return wallet.auth(action, order_id, bound, timestamp=self.bridge.now())

    # -- actions --------------------------------------------------------------------------

    def do_create_sell(self, crash_at: str | None = None) -> str:
        return self._create("sell", crash_at)

    def do_create_buy(self, crash_at: str | None = None) -> str:
        return self._create("buy", crash_at)

    def _create(self, side: str, crash_at: str | None) -> str:
        wallet = self.wallet()
        pair = self.rng.choice(PAIRS)
        amount = self.rng.choice((self.rng.randint(100_000, 2 * MICRO), self.rng.randint(2 * MICRO, 60 * MICRO)))
        price = self.rng.randint(1_000_000, 3_000_000_000)
        ttl = self.rng.choice(TTLS)
        eth = self.address() if side == "sell" or self.rng.random() < 0.5 else ""
        bound = {"side": side, "pair": pair, "amount_micro_rtc": amount, "price_per_rtc_nano_quote": price,
                 "ttl_seconds": ttl, "eth_address": eth}
        auth = self.signed(wallet, "create_order", "create_order", bound)
        how = self.transport(crash_at)
        if how == "http":
            out = self.http("/api/orders", {"side": side, "pair": pair, "wallet": wallet.address,
                                            "amount_micro_rtc": amount, "price_per_rtc_nano_quote": price,
                                            "ttl_seconds": ttl, "eth_address": eth, "wallet_auth": auth})
        else:
            req = create.CreateRequest(side=side, pair=pair, wallet=wallet.address, quote_address=eth,
                                         amount_micro_rtc=amount, price_nano_quote=price, ttl_seconds=ttl,
                                         wallet_auth=auth)

            def call() -> dict:
                created = create.create_order(self.bridge, req)
                return {"order_id": created.order.order_id, "status": created.order.status,
                        "htlc_secret": created.htlc_secret}

            out = self.inproc(call, crash_at)
        if (out.code == 201 or (how == "inproc" and out.code == 200)) and out.body.get("htlc_secret"):
            self.secrets[out.body["order_id"]] = out.body["htlc_secret"]
        return (f"create {side} {amount}u @{price} {pair} ttl={ttl} by w{self.wallets.index(wallet)} "
                f"[{how}] -> {self.describe(out)}")

    def do_match(self, crash_at: str | None = None) -> str:
        order = self.pick_order(("open",))
        if order is None:
            return "match: no order"
        maker = self.owner(order["maker_wallet"])
        others = [w for w in self.wallets if w is not maker]
        wallet = maker if self.rng.random() < 0.05 else self.rng.choice(others)
        eth = self.address()
        auth = self.signed(wallet, "match_order", order["order_id"], {"eth_address": eth})
        how = self.transport(crash_at)
        if how == "http":
            out = self.http(f"/api/orders/{order['order_id']}/match",
                            {"wallet": wallet.address, "eth_address": eth, "wallet_auth": auth})
        else:
            def call() -> dict:
                row, secret = match.match_order(self.bridge, order["order_id"], wallet.address, eth, auth)
                return {"order_id": row.order_id, "status": row.status, "htlc_secret": secret}

            out = self.inproc(call, crash_at)
        if out.code == 200 and out.body.get("htlc_secret"):
            self.secrets[order["order_id"]] = out.body["htlc_secret"]
        return f"match {self.tag(order)} by w{self.wallets.index(wallet)} [{how}] -> {self.describe(out)}"

    def do_confirm(self, crash_at: str | None = None, wrong: bool = False) -> str:
        order = self.pick_order(("matched",), need_secret=not wrong, bias=0.9)
        if order is None:
            return "confirm: no order with a known preimage"
        secret = "".join(self.rng.choice("0123456789abcdef") for _ in range(64)) if wrong else self.secret_for(order)
        party = self.rng.choice((None, order["maker_wallet"], order["taker_wallet"]))
        quote_tx = f"0xq{self.step}"
        how = self.transport(crash_at)
        if how == "http":
            body = {"secret": secret, "quote_tx": quote_tx} | ({"wallet": party} if party else {})
            out = self.http(f"/api/orders/{order['order_id']}/confirm", body)
        else:
            def call() -> dict:
                row = confirm.confirm_order(self.bridge, order["order_id"], secret=secret, quote_tx=quote_tx,
                                             wallet=party)
                return {"order_id": row.order_id, "status": row.status}

            out = self.inproc(call, crash_at)
        if wrong and out.code == 200:
            self.fail(f"a wrong preimage was accepted for {order['order_id']}: {out.body}")
        return f"confirm{' WRONG' if wrong else ''} {self.tag(order)} [{how}] -> {self.describe(out)}"

    def do_confirm_wrong(self) -> str:
        return self.do_confirm(wrong=True)

    def do_cancel(self, crash_at: str | None = None) -> str:
        order = self.pick_order(("open",))
        if order is None:
            return "cancel: no order"
        maker = self.owner(order["maker_wallet"])
        wallet = maker if self.rng.random() < 0.9 else self.wallet()
        auth = self.signed(wallet, "cancel_order", order["order_id"], {})
        how = self.transport(crash_at)
        if how == "http":
            out = self.http(f"/api/orders/{order['order_id']}/cancel", {"wallet": wallet.address, "wallet_auth": auth})
        else:
            def call() -> dict:
                row = cancel.cancel_order(self.bridge, order["order_id"], wallet.address, auth)
                return {"order_id": row.order_id, "status": row.status}

            out = self.inproc(call, crash_at)
        return f"cancel {self.tag(order)} by w{self.wallets.index(wallet)} [{how}] -> {self.describe(out)}"

    def do_reconcile(self, crash_at: str | None = None) -> str:
        out = self.inproc(lambda: reconcile.run_once(self.bridge), crash_at)
        if out.crashed_at is None and out.body.get("errors"):
            self.fail(f"reconcile pass counted errors: {out.body}")
        busy = {k: v for k, v in out.body.items() if v}
        return f"reconcile -> {out.crashed_at and 'CRASH at ' + out.crashed_at or busy}"

    def do_advance_time(self) -> str:
        """Time passes with the bridge up: its timer runs a reconcile pass at least every
        :data:`MAX_RECONCILE_GAP_SECONDS` (a longer outage would let escrow jobs reach their
        TTL under a settlement, which ends in recovery by design; not what this run tests)."""
        seconds = self.rng.choice((self.rng.randint(1, 120), self.rng.randint(GRACE_SECONDS, 900),
                                   self.rng.randint(3600, 6 * 3600), self.rng.randint(12 * 3600, 60 * 3600)))
        left, passes = seconds, 0
        while left > 0:
            chunk = min(left, MAX_RECONCILE_GAP_SECONDS)
            advance(self.bridge, self.dev_node, chunk)
            left -= chunk
            if left > 0:
                passes += 1
                self.do_reconcile()
        return f"advance time {seconds}s ({passes} timer passes on the way)"

    def do_confirm_pool(self) -> str:
        return f"confirm pending pool -> {self.dev_node.confirm_pending()} confirmed"

    def do_fault(self) -> str:
        rule = {"endpoint": self.rng.choice(NODE_CALLS), "count": 1, **self.rng.choice(FAULT_KINDS)}
        self.dev_node.add_fault(**rule)
        self.stats[f"fault {rule['kind']}"] += 1
        return f"arm fault {rule}"

    def do_crash(self) -> str:
        """Crash the next operation: at a named point (often never reached by that operation)
        or at the n-th crash point it reaches."""
        point = self.rng.choice(CRASH_POINTS) if self.rng.random() < 0.4 else f"#{self.rng.randint(1, 8)}"
        action = self.rng.choice(MUTATIONS)
        return f"CRASH-ARMED {point}: " + getattr(self, f"do_{action}")(crash_at=point)

    # -- reporting ------------------------------------------------------------------------

    def describe(self, out: Outcome) -> str:
        if out.crashed_at:
            return f"CRASH at {out.crashed_at}"
        detail = out.body.get("status") or out.body.get("error")
        return f"{out.code} {detail}"

    def tag(self, order) -> str:
        return f"{order['order_id']}({order['side']},{order['status']})"

    # -- invariants -----------------------------------------------------------------------

    def check(self) -> None:
        problems: list[str] = []
        state = self.dev_node.state()
        if state["total_balance_i64"] != state["minted_i64"]:
            problems.append(f"node not conserved: balances {state['total_balance_i64']} != minted "
                            f"{state['minted_i64']}")
        if state["agent_escrow_i64"] != state["escrow_locked_i64"]:
            problems.append(f"escrow pool {state['agent_escrow_i64']} != locked by jobs {state['escrow_locked_i64']}")
        rows = orders(self.bridge)
        conn = self.bridge.db.connection()
        changed = []
        for row in rows:
            if self.versions.get(row["order_id"]) != row["order_version"]:
                self.versions[row["order_id"]] = row["order_version"]
                changed.append(row["order_id"])
                codes = violations_of(conn, row)
                if codes:
                    problems.append(f"{row['order_id']} ({row['status']}): invariants broken {codes}")
            if row["escrow_job_id"]:
                owner = self.job_owner.setdefault(row["escrow_job_id"], row["order_id"])
                if owner != row["order_id"]:
                    problems.append(f"escrow job {row['escrow_job_id']} of {owner} now referenced by "
                                    f"{row['order_id']}")
        problems += ledger_problems(rows, NodeBook.read(self.node_db_path))
        problems += preimage_problems(self.api, changed)
        if self.errors.records:
            problems += [f"bridge logged an error: {text}" for text in self.errors.records]
            self.errors.records.clear()
        if problems:
            self.fail(problems)

    def finish(self) -> dict[str, int]:
        """Stop injecting; settle; check the books with orders at rest, then far in the future
        with every order ended. Returns the final status counts."""
        self.step += 1
        self.recent.append(f"step {self.step}: FINISH (faults cleared, settle, books)")
        crashpoints.set_hook(None)
        self.dev_node.clear_faults()
        settle(self.bridge, self.dev_node, move_node_clock=True)
        self.check()
        book = NodeBook.read(self.node_db_path)
        rows = orders(self.bridge)
        if not self.strict:
            self.known_bug_orders = released_unpaid(rows, book)
        problems = (rest_problems(rows, book, self.funded, unpaid=self.known_bug_orders)
                    + preimage_problems(self.api, [r["order_id"] for r in rows]))
        if problems:
            self.fail(["at rest: " + p for p in problems])
        self.recent.append(f"step {self.step}: FINISH far ahead (31 days)")
        advance(self.bridge, self.dev_node, 31 * 86400)
        settle(self.bridge, self.dev_node, move_node_clock=True)
        self.check()
        book = NodeBook.read(self.node_db_path)
        rows = orders(self.bridge)
        problems = rest_problems(rows, book, self.funded, allow_held=False, unpaid=self.known_bug_orders)
        if problems:
            self.fail(["all ended: " + p for p in problems])
        return Counter(row["status"] for row in rows)
