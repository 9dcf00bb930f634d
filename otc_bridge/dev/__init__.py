"""Development tooling: the dev escrow node (:mod:`.node`, a simulator of the real node) and
the ``dev`` / ``demo`` commands (:mod:`.tools`). Never imported by the production path.
"""
