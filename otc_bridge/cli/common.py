"""What the commands of ``otc-bridge`` (:mod:`otc_bridge.cli`) share: the settings, read
from the environment with the command's options laid over it (every setting is in
deploy/otc-bridge.env; docs/deploy.md).
"""

from __future__ import annotations

import os

import click

from otc_bridge.config import Config, ConfigError


def load_config(**overrides: object) -> Config:
    """:class:`~otc_bridge.config.Config` from the environment with ``overrides`` (setting
    name to value; ``None``: not given) laid over it; a bad setting is a usage error naming it."""
    env = dict(os.environ)
    for key, value in overrides.items():
        if value is not None:
            env[key] = str(value)
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
