"""The templates a journey's messages name, checked before anything runs: each must exist, have
its default locale, and render in every locale it has against sample data (the journey's
`sample` over the template's own), in the sender's sandbox: every part (subject, preheader,
body, html in its layout with its partials, from, reply_to), and an email needs a subject.
Rendering is the sender's; this only asks it."""

from __future__ import annotations

from typing import Any

import orjson

from app.config import SenderSettings
from app.engine import Journey, JourneyError
from app.engine.definitions import Digest, MessageStep, WebhookRequest
from app.engine.loader import JourneyErrors, load_definition_text, locate
from app.sender.channels import webhook_body
from app.sender.templates import RenderedMessage, RenderError, TemplateStore

RENDERS = "a template that renders with the sample variables (`sample:` in the journey or template)"
BODY_RENDERS = "a webhook body that renders with the sample variables (JSON, if sent as JSON)"


def template_store() -> TemplateStore:
    """The sender's templates (TEMPLATES_DIR, DEFAULT_LOCALE)."""
    settings = SenderSettings()
    return TemplateStore(settings.templates_dir, settings.default_locale)


def missing_templates(
    journey: Journey, text: str, source: str, store: TemplateStore
) -> list[JourneyError]:
    """A message whose template has no file: what `simulate` and `deploy` refuse."""
    error = locate(text, source)
    return [
        error(
            ("steps", step.id, "template"),
            step.template,
            f"a template in {store.directory} (no {step.template}.yaml there)",
        )
        for step in _messages(journey)
        if not store.exists(step.template)
    ]


def template_errors(
    journey: Journey, text: str, source: str, store: TemplateStore
) -> list[JourneyError]:
    """Every problem of the journey's templates: missing ones, a missing default locale, and in
    each locale a missing variable, a sandbox violation or a syntax error."""
    errors = missing_templates(journey, text, source, store)
    error = locate(text, source)
    for step in _messages(journey):
        if not store.exists(step.template):
            continue
        where = ("steps", step.id, "template")
        try:
            locales = store.locales(step.template)
            variables = {
                **({"digest": sample_digest(step.digest)} if step.digest else {}),
                **store.sample(step.template),
                **journey.sample,
            }
        except RenderError as problem:
            errors.append(error(where, f"a broken template: {problem}", "a template file"))
            continue
        if store.default_locale not in locales:
            errors.append(
                error(
                    where,
                    f"a template '{step.template}' with locales {', '.join(locales) or 'none'}",
                    f"a variant for the default locale '{store.default_locale}'",
                )
            )
        body_checked = False
        for locale in locales:
            try:
                rendered = store.render(step.template, locale, variables)
            except RenderError as problem:
                errors.append(error(where, f"a render error: {problem}", RENDERS))
                continue
            if step.channel == "email" and not rendered.subject.strip():
                errors.append(
                    error(
                        where,
                        f"an email template '{step.template}' ({locale}) with an empty subject",
                        "a subject (a mailbox provider refuses an email without one)",
                    )
                )
            if step.webhook is not None and step.webhook.body is not None and not body_checked:
                body_checked = True
                problem = _body_problem(step.webhook, step.webhook.body, rendered, variables)
                if problem is not None:
                    errors.append(error(("steps", step.id, "body"), problem, BODY_RENDERS))
    return errors


def _body_problem(
    request: WebhookRequest, template: str, message: RenderedMessage, variables: dict[str, Any]
) -> str | None:
    """What is wrong with a webhook step's body rendered from the sample, or None: it must
    render and, sent as JSON (no Content-Type of its own says otherwise), be JSON."""
    try:
        body = webhook_body(template, variables, message, "0" * 32, "sample-user")
    except RenderError as problem:
        return f"a render error: {problem}"
    content_type = next(
        (value for name, value in request.headers if name.lower() == "content-type"), "json"
    )
    if "json" in content_type:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as problem:
            return f"a body that is not JSON ({problem})"
    return None


def sample_digest(digest: Digest) -> dict[str, Any]:
    """A digest step's `digest` for checking its template, unless a sample gives one: each
    event once, listed newest first, without properties."""
    at = "2026-01-05T08:00:00Z"
    return {
        "since": "2025-12-29T08:00:00Z",
        "counts": dict.fromkeys(digest.events, 1),
        "total": len(digest.events),
        "latest": [{"name": n, "at": at, "properties": {}} for n in digest.events][: digest.latest],
    }


def raise_all(errors: list[JourneyError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise JourneyErrors(errors)


def check_deployable(text: str, source: str) -> None:
    """What `journeys deploy` refuses besides what the loader refuses: a missing template."""
    loaded = load_definition_text(text, source)
    if isinstance(loaded, Journey):
        raise_all(missing_templates(loaded, text, source, template_store()))


def _messages(journey: Journey) -> list[MessageStep]:
    return [step for step in journey.steps.values() if isinstance(step, MessageStep)]
