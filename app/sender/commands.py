"""`journeys sender` and `journeys provider-stub`."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

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
