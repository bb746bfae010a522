"""`journeys validate`, `journeys graph` and `journeys simulate`: the engine without any server."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import orjson

from app.authoring.files import load_journey, load_rules, read_events
from app.authoring.templates import missing_templates, raise_all, template_errors, template_store
from app.engine import (
    Analytics,
    Deployment,
    Journey,
    JourneyEngine,
    JourneyError,
    ScheduleTimer,
    Send,
    UserEvent,
    VersionedRules,
    load_definition_text,
)
from app.engine.conversions import conversion_figures, first_branches
from app.engine.figures import WAITING
from app.engine.inputs import ZONE_REFUSED, known_zone
from app.engine.simulator import SimulatedEffect, Simulator
from app.topics import RecordError

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _load(paths: tuple[Path, ...]) -> list[Journey]:
    try:
        return [load_journey(path) for path in paths]
    except JourneyError as error:
        raise click.ClickException(str(error)) from None


def _load_with_templates(paths: tuple[Path, ...]) -> list[Journey]:
    """The journeys, refused when a message names a template that does not exist."""
    journeys = _load(paths)
    store = template_store()
    for path, journey in zip(paths, journeys, strict=True):
        missing = missing_templates(journey, path.read_text(), str(path), store)
        if missing:
            raise click.ClickException("\n".join(map(str, missing)))
    return journeys


@click.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
def validate(files: tuple[Path, ...]) -> None:
    """Check journey files and rules files (kind: rules), and render every template a journey's
    messages name in each of its locales against sample data; each error names the file, line
    and path, found and expected."""
    failed = False
    store = template_store()
    for path in files:
        text = path.read_text()
        try:
            loaded = load_definition_text(text, str(path))
            if isinstance(loaded, Journey):
                raise_all(template_errors(loaded, text, str(path), store))
        except JourneyError as error:
            click.echo(str(error), err=True)
            failed = True
        else:
            click.echo(f"{path}: ok ({_describe(loaded)})")
    if failed:
        sys.exit(1)


def _describe(loaded: Journey | VersionedRules) -> str:
    if isinstance(loaded, VersionedRules):
        return f"rules version {loaded.version}: {loaded.rules.describe()}"
    return f"{loaded.id} version {loaded.version}, {len(loaded.steps)} steps"


@click.command()
@click.argument("file", type=FILE)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write an HTML page.",
)
def graph(file: Path, html_out: Path | None) -> None:
    """Print the journey's flow as Mermaid text (or write it as a self-contained HTML page)."""
    from app.engine.graph import html_page, mermaid

    (journey,) = _load((file,))
    if html_out is None:
        click.echo(mermaid(journey), nl=False)
    else:
        html_out.write_text(html_page(journey))
        click.echo(f"{html_out}: written")


def _read_events(path: Path) -> list[UserEvent]:
    try:
        return read_events(path)
    except RecordError as error:
        raise click.ClickException(str(error)) from None


def _timeline_line(item: SimulatedEffect) -> str | None:
    effect, at = item.effect, f"{item.at:%Y-%m-%d %H:%M:%S}"
    match effect:
        case Send():
            chosen = ", ".join(branch_id for _, branch_id in effect.branches)
            plural = "es" if len(effect.branches) > 1 else ""
            branch = f" (branch{plural} {chosen})" if chosen else ""
            return f"{at}  {effect.step_id}: sent {effect.channel} '{effect.template_id}'{branch}"
        case ScheduleTimer():
            return f"{at}  {effect.step_id}: waiting until {effect.due_at:%Y-%m-%d %H:%M:%S}"
        case Analytics() if effect.event == WAITING:
            return None  # the gauge's records: the timer lines above say as much
        case Analytics():
            where = f"{effect.step_id}: " if effect.step_id else ""
            reason = f" ({effect.reason})" if effect.reason else ""
            return f"{at}  {where}{effect.event}{reason}"
    return None


def _moment(_context: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@click.command()
@click.argument("journeys", nargs=-1, required=True, type=FILE)
@click.option("--events", "events_file", required=True, type=FILE, help="User events, JSON lines.")
@click.option(
    "--format", "output", type=click.Choice(["text", "jsonl"]), default="text", show_default=True
)
@click.option(
    "--rules",
    "rules_file",
    type=FILE,
    help="A rules file (quiet hours and frequency caps for all journeys), as deployed.",
)
@click.option("--days", default=30, show_default=True, help="Days to run on after the last event.")
@click.option(
    "--received-at",
    callback=_moment,
    help="Count every event as received then (ISO 8601, UTC if no offset), as a worker judges "
    "an event's time against its Kafka record's timestamp; by default each event counts as "
    "received at its own time.",
)
@click.option(
    "--published-at",
    callback=_moment,
    help="Count the journeys as first published then (ISO 8601, UTC if no offset), as the "
    "workers know it: an event-triggered journey enters users only for events at or after it, "
    "unless it says enter_past_events: true. By default they count as published before the "
    "first event.",
)
def simulate(
    journeys: tuple[Path, ...],
    events_file: Path,
    output: str,
    rules_file: Path | None,
    days: int,
    received_at: datetime | None,
    published_at: datetime | None,
) -> None:
    """Run journeys over events with a virtual clock, no server: a timeline per user."""
    try:
        rules = load_rules(rules_file) if rules_file else None
    except JourneyError as error:
        raise click.ClickException(str(error)) from None
    loaded = _load_with_templates(journeys)
    deployments = {(j.id, j.version): Deployment(published_at=published_at) for j in loaded}
    simulator = Simulator(JourneyEngine(loaded, rules, deployments=deployments))
    events = _read_events(events_file)
    if received_at is not None:
        events = [replace(event, received_at=received_at) for event in events]
    simulator.feed(events)
    simulator.finish(timedelta(days=days))
    effects = simulator.effects
    for event, reason in simulator.refused:
        click.echo(f"refused event {event.event_id} of {event.user_id}: {reason}", err=True)
    for event in events:  # as a worker's dead letter says; the engine kept the last valid zone
        if event.timezone and not known_zone(event.timezone):
            click.echo(
                f"refused the timezone of event {event.event_id} of {event.user_id}: "
                f"{ZONE_REFUSED}",
                err=True,
            )
    if output == "jsonl":
        for item in effects:
            sys.stdout.buffer.write(orjson.dumps(item.to_record()) + b"\n")
        return
    click.echo("times in UTC")
    for user in dict.fromkeys(item.effect.user_id for item in effects):
        click.echo(f"{user}")
        for item in effects:
            if item.effect.user_id == user and (line := _timeline_line(item)):
                click.echo(f"  {item.effect.journey_id}  {line}")
    click.echo("\nper step")
    counts = Counter(
        (item.effect.journey_id, item.effect.step_id or "-", _kind(item))
        for item in effects
        if not isinstance(item.effect, ScheduleTimer)
    )
    for (journey_id, step_id, kind), count in sorted(counts.items()):
        click.echo(f"  {journey_id:<18} {step_id:<16} {kind:<12} {count}")
    _echo_conversions(effects, simulator.engine.versions)


def _echo_conversions(
    effects: list[SimulatedEffect], versions: Mapping[tuple[str, int], Journey]
) -> None:
    """Conversions per journey version, messaged and holdout, and per split variant, for the
    journeys with a goal that someone reached."""
    by_journey: dict[str, list[dict[str, object]]] = {}
    for item in effects:
        if isinstance(item.effect, Analytics):
            by_journey.setdefault(item.effect.journey_id, []).append(item.effect.to_record())
    lines = []
    for journey_id, records in sorted(by_journey.items()):
        if not any(r["event"] == "converted" for r in records):
            continue
        for version, figures in sorted(conversion_figures(records).items()):
            groups = [("messaged", figures.messaged), ("holdout", figures.holdout)]
            groups += [
                (f"{step}={branch}", rate)
                for step, branches in sorted(figures.variants.items())
                for branch, rate in sorted(branches.items())
            ]
            shown = "; ".join(f"{name} {r.converted}/{r.entered}" for name, r in groups)
            lines.append(f"  {journey_id} v{version}: converted/entered {shown}")
            baselines = first_branches(versions[journey_id, version])
            lines += [f"    {c.text()}" for c in figures.comparisons(baselines)]
    if lines:
        click.echo("\nconversions")
        click.echo("\n".join(lines))


def _kind(item: SimulatedEffect) -> str:
    effect = item.effect
    return effect.event if isinstance(effect, Analytics) else effect.to_record()["kind"]


def register(main: click.Group) -> None:
    for command in (validate, graph, simulate):
        main.add_command(command)
