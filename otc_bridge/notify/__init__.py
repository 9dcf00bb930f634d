"""Everything that tells someone outside what happened: the outbox worker that delivers
webhooks and operator alerts at least once, the live event stream, metrics and logs.
"""
