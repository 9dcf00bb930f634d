"""The traders' services behind the API's four POST routes: create, match, confirm, cancel.

Each checks the request, burns the wallet signature, writes the intent row with its
compare-and-swap, then hands the node work to :mod:`otc_bridge.settlement`.
"""
