"""Message templates: Jinja2 in a sandbox with strict undefined variables, one file per message,
one entry per locale, falling back from the user's locale to its language to the default. A
missing variable fails the render: a half-rendered message is never sent. An optional `sample`
entry holds variables to check the template with (`journeys validate`); it is not a locale.

An entry's `body` is the text: the whole of a push, SMS or webhook message and an email's
plain-text part. An entry with `html` also makes an email's HTML part: the html is rendered with
autoescaping (a user's attribute cannot inject markup) and wrapped in a shared layout
(`layouts/NAME.html`); html, layouts and texts can include `partials/`. `layout`, `from` and
`reply_to` can be set once for every locale at the top of the file, or per locale."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any

import yaml
from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markupsafe import Markup

SAMPLE = "sample"
SHARED = ("layout", "from", "reply_to")  # top-level keys: the default of every locale
ENTRY = ("subject", "preheader", "body", "html", *SHARED)  # the keys of a locale's entry
DEFAULT_LAYOUT = "default"
FOLDERS = ("layouts", "partials")


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class Address:
    """An email address with an optional display name."""

    email: str
    name: str = ""

    def __str__(self) -> str:
        return formataddr((self.name, self.email))


def parse_address(text: str, what: str) -> Address:
    """'name@domain' or 'Name <name@domain>'; anything else is refused, naming `what` it was."""
    name, email = parseaddr(text)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in email):
        raise RenderError(
            f"{what}: found {text!r}, expected an email address "
            "('name@example.com' or 'Name <name@example.com>')"
        )
    return Address(email, name)


@dataclass(frozen=True)
class RenderedMessage:
    template_id: str
    locale: str
    subject: str
    body: str
    html: str | None = None  # the email's HTML part, in its layout; None: text only
    sender: Address | None = None  # None: the channel's configured sender
    reply_to: Address | None = None
    preheader: str = ""  # the inbox preview line (the layout shows it; `journeys preview` too)
    # A marketing email's one-click unsubscribe URL: in the footer, the text and the headers.
    unsubscribe_url: str | None = None


def _environment(loader: BaseLoader, autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape, loader=loader)


class TemplateStore:
    def __init__(self, directory: Path, default_locale: str) -> None:
        self._directory = directory
        self._default = default_locale
        self._loaded: dict[str, dict[str, Any]] = {}
        loader = PrefixLoader({folder: FileSystemLoader(directory / folder) for folder in FOLDERS})
        self._text = _environment(loader, autoescape=False)
        self._html = _environment(loader, autoescape=True)
        self._compiled: dict[tuple[str, str, str], Template] = {}

    def _load(self, template_id: str) -> dict[str, Any]:
        if template_id not in self._loaded:
            path = self._directory / f"{template_id}.yaml"
            if not path.exists():
                raise RenderError(f"no template '{template_id}' (expected {path})")
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                raise RenderError(f"template '{template_id}' is not valid YAML: {error}") from None
            if not isinstance(loaded, dict):
                raise RenderError(f"template '{template_id}' is not a mapping of locales ({path})")
            _check_shape(template_id, loaded)
            self._loaded[template_id] = loaded
        return self._loaded[template_id]

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def default_locale(self) -> str:
        return self._default

    def exists(self, template_id: str) -> bool:
        return (self._directory / f"{template_id}.yaml").exists()

    def locales(self, template_id: str) -> list[str]:
        return [key for key in self._load(template_id) if key != SAMPLE and key not in SHARED]

    def sample(self, template_id: str) -> dict[str, Any]:
        """The template's own sample variables (its `sample` entry), for checking it."""
        sample = self._load(template_id).get(SAMPLE) or {}
        if not isinstance(sample, dict):
            raise RenderError(f"template '{template_id}': its sample is not a mapping")
        return sample

    def locale_for(self, template_id: str, locale: str | None) -> str:
        """user locale -> its language -> the default locale."""
        variants = self.locales(template_id)
        wanted = (locale or "").replace("_", "-")
        for candidate in (wanted, wanted.split("-")[0], self._default):
            if candidate and candidate in variants:
                return candidate
        raise RenderError(
            f"template '{template_id}' has no '{wanted}', '{wanted.split('-')[0]}' "
            f"or default '{self._default}' variant (it has {sorted(variants)})"
        )

    def render(
        self,
        template_id: str,
        locale: str | None,
        variables: dict[str, Any],
        unsubscribe_url: str | None = None,
    ) -> RenderedMessage:
        """The message in the user's locale; with `unsubscribe_url` (a marketing email), the
        layout gets it as `unsubscribe_url` (the footer shows the link) and the text ends with
        it. Layouts always get the name, None for a message without a link."""
        chosen = self.locale_for(template_id, locale)
        loaded = self._load(template_id)
        entry = {key: loaded[key] for key in SHARED if key in loaded} | loaded[chosen]
        where = f"template '{template_id}' ({chosen})"
        if not isinstance(entry.get("body"), str):
            raise RenderError(f"{where}: no body text")

        def text(part: str) -> str:
            source = entry.get(part, "")
            return self._render(self._text, (template_id, chosen, part), source, variables, where)

        subject, body, preheader = text("subject"), text("body"), text("preheader")
        html = None
        if "html" in entry:
            content = self._render(
                self._html, (template_id, chosen, "html"), entry["html"], variables, where
            )
            frame: dict[str, Any] = {
                "content": Markup(content),
                "subject": subject,
                "preheader": preheader,
                "locale": chosen,
                "unsubscribe_url": unsubscribe_url,
            }
            html = self._in_layout(entry, where, variables | frame)
        sender, reply_to = (
            parse_address(text(part), f"{where}, {part}") if part in entry else None
            for part in ("from", "reply_to")
        )
        if unsubscribe_url is not None:
            body = f"{body.rstrip()}\n\n--\nUnsubscribe: {unsubscribe_url}"
        return RenderedMessage(
            template_id,
            chosen,
            subject,
            body,
            html,
            sender,
            reply_to,
            preheader=preheader,
            unsubscribe_url=unsubscribe_url,
        )

    def _render(
        self,
        environment: SandboxedEnvironment,
        key: tuple[str, str, str],
        source: Any,
        variables: dict[str, Any],
        where: str,
    ) -> str:
        part = key[2]
        if not isinstance(source, str):
            raise RenderError(f"{where}: its {part} is not text")
        try:
            if key not in self._compiled:
                self._compiled[key] = environment.from_string(source)
            return self._compiled[key].render(variables)
        except TemplateError as error:
            raise _render_error(error, f"{where}, in the {part}", self._directory) from None
        except VALUE_ERRORS as error:
            raise _value_error(error, f"{where}, in the {part}") from None

    def _in_layout(self, entry: dict[str, Any], where: str, context: dict[str, Any]) -> str:
        name = entry.get("layout", DEFAULT_LAYOUT)
        if not isinstance(name, str) or not name or "/" in name:
            raise RenderError(f"{where}: found layout {name!r}, expected a layout's name")
        try:
            layout = self._html.get_template(f"layouts/{name}.html")
        except TemplateNotFound:
            raise RenderError(
                f"{where}: no layout '{name}' (expected {self._directory}/layouts/{name}.html)"
            ) from None
        except TemplateError as error:
            raise _render_error(
                error, f"{where}, in the layout '{name}'", self._directory
            ) from None
        try:
            return layout.render(context)
        except TemplateError as error:
            raise _render_error(
                error, f"{where}, in the layout '{name}'", self._directory
            ) from None
        except VALUE_ERRORS as error:
            raise _value_error(error, f"{where}, in the layout '{name}'") from None


# What an expression raises on a user's value it cannot take (`{{ name + 1 }}`, `tojson` of
# something not JSON, a division by zero): a render error of that send, never a crash.
VALUE_ERRORS = (TypeError, ValueError, ArithmeticError)


def _value_error(error: Exception, where: str) -> RenderError:
    """Names the kind of failure, not the value (a user's data)."""
    kind = type(error).__name__
    return RenderError(f"{where}: an expression failed on the values given ({kind})")


def _render_error(error: TemplateError, where: str, directory: Path) -> RenderError:
    """What went wrong, and where: the part, and the partial's line for a syntax error."""
    if isinstance(error, SecurityError):
        return RenderError(f"{where}: a sandbox violation: {error}")
    if isinstance(error, UndefinedError):
        return RenderError(f"{where}: a missing variable: {error}")
    if isinstance(error, TemplateNotFound):
        return RenderError(f"{where}: no file '{error.name}' (partials/ or layouts/ under it)")
    if isinstance(error, TemplateSyntaxError) and error.filename:
        file = Path(error.filename).relative_to(directory)
        return RenderError(f"{where}: {file}, line {error.lineno}: {error.message}")
    return RenderError(f"{where}: {error}")


def _check_shape(template_id: str, loaded: dict[str, Any]) -> None:
    """Every locale's entry is a mapping of known keys: a misspelt `htm:` would otherwise send
    an email without its HTML."""
    for locale, entry in loaded.items():
        if locale == SAMPLE or locale in SHARED:
            continue
        if not isinstance(entry, dict):
            raise RenderError(
                f"template '{template_id}': found '{locale}' with no entry, expected a locale's "
                f"mapping of {', '.join(ENTRY)} (or a top-level {', '.join(SHARED)} or sample)"
            )
        unknown = sorted(str(key) for key in entry if key not in ENTRY)
        if unknown:
            raise RenderError(
                f"template '{template_id}' ({locale}): found the unknown key "
                f"'{unknown[0]}', expected one of {', '.join(ENTRY)}"
            )
