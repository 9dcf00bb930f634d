"""All movement of money, and nothing else: lock escrow, release it, refund it, pay the
buyer, and the reconciler that finishes whatever a crash or a node fault interrupted.

Where RTC leaves escrow for a trade: :func:`.release.advance_release`. Where escrow goes back
to its poster: :func:`.refund.advance_refund`. Where the buyer is paid:
:func:`.payout.pay_buyer`. See docs/architecture.md for who calls what.
"""
