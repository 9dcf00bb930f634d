"""Operator tools: the attention list, the read-only audit against the node, payout
re-drive and resolve of ``settlement_recovery`` (each an audited action).
"""
