"""The quote leg on EVM chains: our HTLC contract (Vyper source and committed artifacts in
``contracts/``), typed reads and event decoding for it (:mod:`.htlc`), ERC-20 calls
(:mod:`.erc20`), and signing and sending transactions with a local key (:mod:`.tx`).

Sits beside :mod:`otc_bridge.node` (the escrow node's client): it may import only
:mod:`otc_bridge.config` and :mod:`otc_bridge.domain`. :mod:`.build` (the compiler wrapper)
is for development only and is never imported by the rest of the bridge.
"""
