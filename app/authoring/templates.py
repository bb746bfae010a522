"""The templates a journey's messages name, checked before anything runs: each must exist, have
its default locale, and render in every locale it has against sample data (the journey's
`sample` over the template's own), in the sender's sandbox: every part (subject, preheader,
body, html in its layout with its partials, from, reply_to), and an email needs a subject.
Rendering is the sender's; this only asks it."""

from __future__ import annotations

from app.config import SenderSettings
from app.engine import Journey, JourneyError
from app.engine.definitions import MessageStep
from app.engine.loader import JourneyErrors, load_definition_text, locate
from app.sender.templates import RenderError, TemplateStore

RENDERS = "a template that renders with the sample variables (`sample:` in the journey or template)"


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
            variables = {**store.sample(step.template), **journey.sample}
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
    return errors


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
