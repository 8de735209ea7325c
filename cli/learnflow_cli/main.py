"""The `learnflow` command: administration (accounts, keys) and the local stack (serve)."""

from __future__ import annotations

import click

from learnflow_cli.admin.commands import accounts, keys
from learnflow_cli.admin.welcome import welcome
from learnflow_cli.local.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """LearnFlow: administer accounts, API keys and welcome e-mails, or run the API locally."""


cli.add_command(accounts)
cli.add_command(keys)
cli.add_command(welcome)
cli.add_command(serve)
