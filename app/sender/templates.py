"""Message templates: Jinja2 in a sandbox with strict undefined variables, one file per message,
one entry per locale, falling back from the user's locale to its language to the default. A
missing variable fails the render: a half-rendered message is never sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class RenderedMessage:
    template_id: str
    locale: str
    subject: str
    body: str


class TemplateStore:
    def __init__(self, directory: Path, default_locale: str) -> None:
        self._directory = directory
        self._default = default_locale
        self._loaded: dict[str, dict[str, dict[str, str]]] = {}

    def _load(self, template_id: str) -> dict[str, dict[str, str]]:
        if template_id not in self._loaded:
            path = self._directory / f"{template_id}.yaml"
            if not path.exists():
                raise RenderError(f"no template '{template_id}' (expected {path})")
            self._loaded[template_id] = yaml.safe_load(path.read_text())
        return self._loaded[template_id]

    def locale_for(self, template_id: str, locale: str | None) -> str:
        """user locale -> its language -> the default locale."""
        variants = self._load(template_id)
        wanted = (locale or "").replace("_", "-")
        for candidate in (wanted, wanted.split("-")[0], self._default):
            if candidate and candidate in variants:
                return candidate
        raise RenderError(
            f"template '{template_id}' has no '{wanted}', '{wanted.split('-')[0]}' "
            f"or default '{self._default}' variant (it has {sorted(variants)})"
        )

    def render(
        self, template_id: str, locale: str | None, variables: dict[str, Any]
    ) -> RenderedMessage:
        chosen = self.locale_for(template_id, locale)
        variant = self._load(template_id)[chosen]
        try:
            subject = ENVIRONMENT.from_string(variant.get("subject", "")).render(variables)
            body = ENVIRONMENT.from_string(variant["body"]).render(variables)
        except TemplateError as error:
            raise RenderError(f"template '{template_id}' ({chosen}): {error}") from None
        return RenderedMessage(template_id, chosen, subject, body)
