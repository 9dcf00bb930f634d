"""The escrow node client (:mod:`.client`), its typed results (:mod:`.results`) and the node's
amount rules at the wire edge (:mod:`.amounts`). See docs/escrow-node.md.
"""
