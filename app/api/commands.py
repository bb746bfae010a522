"""`journeys api` and the CLI counterparts of the API: `list`, `rules`, `show`, `timeline`,
`audience`, `export`, and the lifecycle of a journey: `archive`, `pause`, `resume`,
`rollback`."""

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


@click.command()
@click.argument("journey_id")
@click.option("--version", type=int, help="A deployed version (default: the published one).")
def audience(journey_id: str, version: int | None) -> None:
    """For each leaf of each yes/no decision tree of a journey: the MongoDB query that selects
    its users now (the journey's audience and the leaf's paths) and how many users it selects."""
    from datetime import UTC, datetime

    from app.engine import load_journey_text
    from app.store.analytics import audience_per_leaf
    from app.store.journeys import PUBLISHED, JourneyRegistry
    from app.store.users import UserStore

    async def work(db: Any) -> list[dict[str, Any]]:
        found = await JourneyRegistry(db).versions(journey_id)
        chosen = [
            d
            for d in found
            if d["version"] == version or (version is None and d["status"] == PUBLISHED)
        ]
        if not chosen:
            which = f"version {version}" if version is not None else "published version"
            raise click.ClickException(f"journey '{journey_id}' has no {which}")
        journey = load_journey_text(chosen[-1]["source"], journey_id)
        return await audience_per_leaf(UserStore(db, bulk_ops=1), journey, datetime.now(UTC))

    leaves = _with_database(work)
    if not leaves:
        click.echo(f"{journey_id} has no yes/no decision (branch step)")
    for leaf in leaves:
        users = "depends on the entry time" if leaf["users"] is None else f"{leaf['users']} users"
        click.echo(f"{leaf['decision']} -> {leaf['leaf']}: {users}")
        click.echo(f"  when {leaf['condition']}")
        if leaf["query"] is not None:
            click.echo(f"  db.users.find({leaf['query']})")


@click.command()
@click.argument("journey_id")
@click.option("--since", help="From this date or time (ISO 8601, UTC without an offset).")
@click.option("--until", help="Up to this date or time, not included.")
@click.option("--format", "chosen", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)  # fmt: skip
def export(journey_id: str, since: str | None, until: str | None, chosen: str) -> None:
    """A journey's figures per version, step, figure and hour over a date range (all time by
    default), read from the store: CSV with a header, or JSON. Each hour that overlaps the
    range counts whole."""
    from app.api.figures import RangeError, date_range, export_text
    from app.store.analytics import figure_rows
    from app.store.journeys import JourneyRegistry

    query = {name: value for name, value in (("since", since), ("until", until)) if value}
    try:
        start, end = date_range(query)
    except RangeError as error:
        raise click.BadParameter(str(error), param_hint=f"--{error.where}") from None

    async def work(db: Any) -> list[dict[str, Any]] | None:
        if not await JourneyRegistry(db).versions(journey_id):
            return None
        return await figure_rows(db, journey_id, start, end)

    rows = _with_database(work)
    if rows is None:
        raise click.ClickException(f"no journey '{journey_id}' is deployed")
    click.echo(export_text(journey_id, start, end, rows, chosen), nl=chosen == "json")


def _lifecycle(operation: Callable[[Any], Awaitable[Any]]) -> None:
    """Runs one lifecycle operation on the registry and prints what it did."""
    from app.store.journeys import DeployError, JourneyRegistry, UnknownVersion

    try:
        change = _with_database(lambda db: operation(JourneyRegistry(db)))
    except (UnknownVersion, DeployError) as error:
        raise click.ClickException(str(error)) from None
    exits = "; users inside exit at their next input" if change.exit_users else ""
    archived = "".join(f"; version {v} archived" for v in change.archived)
    click.echo(f"{change.journey_id} version {change.version} {change.status}{archived}{exits}")


EXIT_USERS = click.option(
    "--exit-users", is_flag=True, help="Users inside the version exit at their next input."
)


@click.command()
@click.argument("journey_id")
@click.argument("version", type=int)
@EXIT_USERS
def archive(journey_id: str, version: int, exit_users: bool) -> None:
    """Stop a journey version for good: no new entries; users inside finish it (or exit)."""
    _lifecycle(lambda registry: registry.archive(journey_id, version, exit_users))


@click.command()
@click.argument("journey_id")
@EXIT_USERS
def pause(journey_id: str, exit_users: bool) -> None:
    """Pause a journey's published version: no new entries; users inside wait at their next
    message until `resume` (or exit)."""
    _lifecycle(lambda registry: registry.pause(journey_id, exit_users))


@click.command()
@click.argument("journey_id")
@EXIT_USERS
def resume(journey_id: str, exit_users: bool) -> None:
    """Resume a paused journey: new users enter again; users waiting inside go on (or exit)."""
    _lifecycle(lambda registry: registry.resume(journey_id, exit_users))


@click.command()
@click.argument("journey_id")
@click.argument("version", type=int)
def rollback(journey_id: str, version: int) -> None:
    """Publish VERSION (an older one, or a draft): new users enter it; the version published
    before is archived and its users finish it."""
    _lifecycle(lambda registry: registry.publish(journey_id, version))
