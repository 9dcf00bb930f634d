"""The domain: what an order is, independent of storage, HTTP and the node.

Statuses and the one table of allowed edges (:mod:`.status`), integer money units
(:mod:`.money`), the hashlock helpers (:mod:`.hashlock`), wallet addresses and signatures
(:mod:`.wallets`), the typed :class:`~.order.Order`, the errors services raise
(:mod:`.errors`), the public JSON views of an order (:mod:`.views`) and webhook destinations
(:mod:`.destinations`). The bottom layer: it imports nothing else of the bridge
(docs/architecture.md).
"""
