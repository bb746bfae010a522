"""The `journeys` command line; each part of the system adds its subcommands here."""

import click


@click.group()
@click.version_option(package_name="journeys")
def main() -> None:
    """Journeys: customer journeys and lifecycle messaging."""


@main.group()
def topics() -> None:
    """The topics of the wire contract in topics/."""


@topics.command("apply")
def topics_apply() -> None:
    """Create missing topics from their contracts, set existing ones' configs to them, and
    report where their partitions differ (exit 1)."""
    import asyncio

    from app.config import Settings
    from app.topic_admin import apply_topics

    reports = asyncio.run(apply_topics(Settings()))
    for report in reports:
        click.echo(report.describe())
    if any(report.differences for report in reports):
        raise SystemExit(1)


@main.command("shard-commands")
@click.option("--db", "database", default=None, help="the database (default: MONGO_DB)")
def shard_commands(database: str | None) -> None:
    """Print the mongosh commands that shard the database by each collection's shard key."""
    from app.config import Settings
    from app.store.schema import shard_commands as commands

    click.echo(commands(database or Settings().mongo_db), nl=False)


def _register_commands() -> None:
    from app.api.commands import (
        api,
        archive,
        audience,
        export,
        list_journeys,
        list_rules,
        pause,
        resume,
        rollback,
        show,
        timeline,
    )
    from app.authoring.commands import register as register_authoring_commands
    from app.sender.commands import preview, provider_stub, sender, test_send
    from app.worker.commands import deploy, publish, worker

    register_authoring_commands(main)
    main.add_command(worker)
    main.add_command(deploy)
    main.add_command(publish)
    main.add_command(sender)
    main.add_command(provider_stub)
    main.add_command(preview)
    main.add_command(test_send)
    for command in (
        api,
        audience,
        export,
        list_journeys,
        list_rules,
        show,
        timeline,
        archive,
        pause,
        resume,
        rollback,
    ):
        main.add_command(command)


_register_commands()
