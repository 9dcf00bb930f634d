"""The HTTP API: Flask blueprints that parse a request, call one service and shape the answer.

They hold no SQL (reads go through :mod:`otc_bridge.storage.reads`) and never call the node.
"""
