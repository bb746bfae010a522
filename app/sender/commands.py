"""`journeys sender`, `journeys provider-stub`, and `journeys preview` and `test-send` (a
journey's message rendered as the sender would, and delivered to a test recipient)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from app.config import SenderSettings, Settings


@click.command()
@click.option("--loglevel", default="info", show_default=True)
def sender(loglevel: str) -> None:
    """Deliver dispatch records from the send topic through providers."""
    from app.sender.service import Sender

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        service = Sender(Settings(), SenderSettings())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    asyncio.run(run())


@click.command("provider-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True)
@click.option("--print", "print_deliveries", is_flag=True, help="Print deliveries as they land.")
def provider_stub(host: str, port: int, print_deliveries: bool) -> None:
    """A local email, push, webhook and SMS provider that honours Idempotency-Key and checks
    the SMS credentials and webhook signatures the sender's settings give (for demos and tests)."""
    from app.sender.stub import ProviderStub, serve

    async def run() -> None:
        settings = SenderSettings()
        stub = ProviderStub(
            print_deliveries=print_deliveries,
            sms_account_sid=settings.sms_account_sid,
            sms_auth_token=settings.sms_auth_token,
            webhook_secret=settings.webhook_secret,
        )
        await serve(stub, host, port)
        click.echo(f"provider stub on http://{host}:{port}", err=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _preview_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        (
            click.argument("journey"),
            click.argument("step"),
            click.option("--user", help="A user in the store, with their state as it is."),
            click.option(
                "--data",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="A JSON or YAML user: user_id, attributes, locale, timezone, event, events.",
            ),
            click.option(
                "--version", type=int, help="A deployed version instead of the published."
            ),
            click.option("--locale", help="Only this locale of the template."),
        )
    ):
        command = option(command)
    return command


async def _prepared(
    journey: str, step: str, user: str | None, data: Path | None, version: int | None
) -> Any:
    """The Preview of a step for a user: JOURNEY is a journey file when one is there, else the
    id of a deployed journey (its published version, or --version); the user is a stored one
    (--user) or a data file's (--data)."""
    from app.authoring.files import load_journey
    from app.authoring.templates import template_store
    from app.sender.preview import (
        PreviewError,
        preview,
        preview_data,
        stored_journey,
        stored_user,
    )
    from app.store.journeys import JourneyRegistry
    from app.store.mongo import close_client, new_client
    from app.store.users import UserStore

    if (user is None) == (data is None):
        raise click.UsageError("give exactly one of --user USER and --data FILE")
    now = datetime.now(UTC)
    is_file = Path(journey).is_file()
    if is_file and version is not None:
        raise click.UsageError("--version is for a deployed journey, not a file")
    settings = Settings()
    client = new_client(settings) if user is not None or not is_file else None
    try:
        db = client[settings.mongo_db] if client is not None else None
        loaded = (
            load_journey(journey)
            if is_file
            else await stored_journey(JourneyRegistry(db), journey, version)
        )
        if data is not None:
            content = yaml.safe_load(data.read_text())
            return preview_data(loaded, step, content, template_store(), now)
        assert user is not None
        state = await stored_user(UserStore(db, settings.mongo_bulk_ops), user)
        return preview(loaded, step, state, template_store(), now)
    except PreviewError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if client is not None:
            await close_client(client)


@click.command()
@_preview_options
@click.option("--part", type=click.Choice(("subject", "preheader", "text", "html")))
def preview(
    journey: str,
    step: str,
    user: str | None,
    data: Path | None,
    version: int | None,
    locale: str | None,
    part: str | None,
) -> None:
    """Render a journey's message step for one user as the sender would, in each locale of its
    template (or --locale), with the variables the engine would send. JOURNEY is a journey file,
    or the id of a deployed journey (its published version, or --version)."""
    from app.dispatch.unsubscribe import UnsubscribeLinks
    from app.sender.preview import parts
    from app.sender.templates import RenderError

    shown = asyncio.run(_prepared(journey, step, user, data, version))
    try:
        locales = [locale] if locale else shown.locales()
        links = UnsubscribeLinks.of(Settings())
        rendered = [shown.render(code, links) for code in locales]
    except RenderError as error:
        raise click.ClickException(str(error)) from None
    for message in rendered:
        mark = " (the user's)" if message.locale == shown.locale else ""
        click.echo(
            f"# {shown.journey.key} {shown.step.id}: {shown.step.channel} "
            f"'{shown.step.template}' for {shown.user.user_id}, {message.locale}{mark}"
        )
        for name, value in parts(message).items():
            if part is not None and name != part:
                continue
            if name in ("text", "html"):
                click.echo(f"{name}:" if value is not None else f"{name}: (none: text only)")
                if value is not None:
                    click.echo(value.rstrip("\n"))
            else:
                click.echo(f"{name}: {value}")


@click.command("test-send")
@_preview_options
@click.option("--to", "to", required=True, help="The test recipient's address (or token, URL).")
def test_send(
    journey: str,
    step: str,
    user: str | None,
    data: Path | None,
    version: int | None,
    locale: str | None,
    to: str,
) -> None:
    """Deliver a journey's message step, rendered for one user, to a test recipient through the
    real channel, once: subject prefixed `[TEST] `, dispatch id `test:...`; the user's state,
    the delivery ledger and the send topic are left alone. JOURNEY as for `preview`."""
    import aiohttp

    from app.dispatch.unsubscribe import UnsubscribeLinks
    from app.sender.channels import channels_from
    from app.sender.preview import PreviewError, send_test
    from app.sender.templates import RenderError

    async def run() -> Any:
        shown = await _prepared(journey, step, user, data, version)
        settings = SenderSettings()
        timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            links = UnsubscribeLinks.of(Settings())
            return await send_test(session, channels_from(settings), shown, to, links, locale)

    try:
        sent = asyncio.run(run())
    except (PreviewError, RenderError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"sent test {sent.channel} {sent.dispatch_id} to {sent.to}: "
        f"{sent.message.subject!r} ({sent.message.locale})"
    )
