"""`journeys api` and the CLI counterparts of the API: `list`, `rules`, `show`, `timeline`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson

from app.config import ApiSettings, Settings

T = TypeVar("T")


def _with_database(work: Callable[[Any], Awaitable[T]]) -> T:
    from app.store.mongo import close_client, new_client

    async def run() -> T:
        settings = Settings()
        client = new_client(settings)
        try:
            return await work(client[settings.mongo_db])
        finally:
            await close_client(client)

    return asyncio.run(run())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
def api(host: str) -> None:
    """Serve the HTTP API (journeys, events, flow pages, timelines, metrics, health)."""
    from aiohttp import web

    from app.api.server import Api

    api_settings = ApiSettings()
    web.run_app(Api(Settings(), api_settings).app(), host=host, port=api_settings.port)


@click.command("list")
def list_journeys() -> None:
    """List deployed journeys and their versions."""
    from app.store.journeys import JourneyRegistry

    for d in _with_database(lambda db: JourneyRegistry(db).list()):
        click.echo(f"{d.journey.id:<24} v{d.journey.version:<4} {d.status:<10} {d.journey.name}")


@click.command("rules")
def list_rules() -> None:
    """List deployed rules versions; workers apply the newest published one."""
    from app.store.rules import RulesRegistry

    deployed = _with_database(lambda db: RulesRegistry(db).list())
    if not deployed:
        click.echo("no rules deployed")
    for d in deployed:
        click.echo(f"rules v{d.rules.version:<4} {d.status:<10} {d.rules.rules.describe()}")


@click.command()
@click.argument("journey_id")
def show(journey_id: str) -> None:
    """Show every version of a journey, with its source."""
    from app.store.journeys import JourneyRegistry

    found = _with_database(lambda db: JourneyRegistry(db).versions(journey_id))
    if not found:
        raise click.ClickException(f"no journey '{journey_id}' is deployed")
    for document in found:
        click.echo(f"# {journey_id} version {document['version']} ({document['status']})")
        click.echo(document["source"])


@click.command()
@click.argument("user_id")
def timeline(user_id: str) -> None:
    """One user's timeline across journeys: every transition, why, and each delivery."""
    from app.store.analytics import user_timeline

    for item in _with_database(lambda db: user_timeline(db, user_id)):
        click.echo(orjson.dumps(item, default=str).decode())
