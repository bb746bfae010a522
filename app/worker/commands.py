"""`journeys worker` and `journeys deploy`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from app.config import Settings, WorkerSettings


@click.command()
@click.option("--loglevel", default="info", show_default=True)
def worker(loglevel: str) -> None:
    """Run a stream worker (Faust): user-events repartitioned by user, and timers."""
    import faust

    from app.worker.app import create_app

    app, _ = create_app(Settings(), WorkerSettings())
    runner = faust.Worker(app, loglevel=loglevel)
    # Faust's progress spinner, on at WARN and above, sets the root logger to DEBUG to spin on
    # every record: every debug call of aiokafka and pymongo was then formatted (a quarter of
    # the worker's CPU under load).
    runner.spinner = None
    runner.execute_from_commandline()


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--draft", is_flag=True, help="Store as a draft: workers do not run it.")
def deploy(files: tuple[str, ...], draft: bool) -> None:
    """Validate journey files and rules files (kind: rules) and deploy them; workers pick them
    up without a restart. A journey version's text deployed again changes nothing; an archived
    or paused version is not brought back (see `rollback` and `resume`)."""
    from app.authoring.templates import check_deployable
    from app.engine import JourneyError
    from app.store.deploy import deploy_text
    from app.store.journeys import (
        DRAFT,
        PUBLISHED,
        DeployedJourney,
        DeployError,
    )
    from app.store.mongo import close_client, new_client
    from app.store.schema import ensure_indexes

    async def run() -> None:
        settings = Settings()
        client = new_client(settings)
        try:
            database = client[settings.mongo_db]
            await ensure_indexes(database)
            status = DRAFT if draft else PUBLISHED
            for name in files:
                deployed = await deploy_text(database, Path(name).read_text(), name, status)
                unchanged = deployed.previous_status == deployed.status
                what = "already deployed" if unchanged else "deployed"
                if isinstance(deployed, DeployedJourney):
                    journey = deployed.journey
                    click.echo(
                        f"{name}: {journey.id} version {journey.version} {what} ({deployed.status})"
                    )
                else:
                    click.echo(
                        f"{name}: rules version {deployed.rules.version} {what} "
                        f"({deployed.status}): {deployed.rules.rules.describe()}"
                    )
        finally:
            await close_client(client)

    try:
        for name in files:  # before deploying any: a missing template refuses the whole command
            check_deployable(Path(name).read_text(), name)
        asyncio.run(run())
    except (JourneyError, DeployError) as error:
        raise click.ClickException(str(error)) from None


@click.command()
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rebase/--as-is",
    default=False,
    help="Shift the events' times so the last happens now, keeping the gaps between them.",
)
def publish(events_file: Path, rebase: bool) -> None:
    """Publish user events from a JSONL file to the user-events topic."""
    from app.streams.publish import publish, rebased
    from app.topics import RecordError, read_jsonl

    try:
        events = read_jsonl("user-events", events_file)
    except RecordError as error:
        raise click.ClickException(str(error)) from None
    if rebase:
        events = rebased(events, datetime.now(UTC))
    count = asyncio.run(publish(Settings(), events))
    click.echo(f"{events_file}: {count} events published")
