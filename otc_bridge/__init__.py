"""otc_bridge: a self-hosted OTC bridge swapping RTC against ETH, USDC and ERG.

Importing the package does no work: no database is opened, no thread started and no
network touched. Build the application with :func:`otc_bridge.app.create_app`.
"""

__version__ = "0.1.0"
