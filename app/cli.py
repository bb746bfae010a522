"""The `journeys` command line; each part of the system adds its subcommands here."""

import click


@click.group()
@click.version_option(package_name="journeys")
def main() -> None:
    """Journeys: customer journeys and lifecycle messaging."""
