"""``python -m otc_bridge.cli``: the ``otc-bridge`` command line (:func:`otc_bridge.cli.main`)."""

from otc_bridge.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
