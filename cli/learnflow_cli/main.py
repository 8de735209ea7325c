"""The `learnflow` command: administration (accounts, keys) and the local stack (serve)."""

from __future__ import annotations

import click

from learnflow_cli.admin.commands import accounts, keys
from learnflow_cli.local.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """LearnFlow: administer accounts and API keys, or run the whole API locally."""


cli.add_command(accounts)
cli.add_command(keys)
cli.add_command(serve)
