"""Message templates: Jinja2 in a sandbox with strict undefined variables, one file per message,
one entry per locale, falling back from the user's locale to its language to the default. A
missing variable fails the render: a half-rendered message is never sent. An optional `sample`
entry holds variables to check the template with (`journeys validate`); it is not a locale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
SAMPLE = "sample"


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
            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                raise RenderError(f"template '{template_id}' is not valid YAML: {error}") from None
            if not isinstance(loaded, dict):
                raise RenderError(f"template '{template_id}' is not a mapping of locales ({path})")
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
        return [key for key in self._load(template_id) if key != SAMPLE]

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
        self, template_id: str, locale: str | None, variables: dict[str, Any]
    ) -> RenderedMessage:
        chosen = self.locale_for(template_id, locale)
        variant = self._load(template_id)[chosen]
        if not isinstance(variant, dict) or not isinstance(variant.get("body"), str):
            raise RenderError(f"template '{template_id}' ({chosen}): no body text")
        try:
            subject = ENVIRONMENT.from_string(variant.get("subject", "")).render(variables)
            body = ENVIRONMENT.from_string(variant["body"]).render(variables)
        except SecurityError as error:
            raise RenderError(
                f"template '{template_id}' ({chosen}): a sandbox violation: {error}"
            ) from None
        except UndefinedError as error:
            raise RenderError(
                f"template '{template_id}' ({chosen}): a missing variable: {error}"
            ) from None
        except TemplateError as error:
            raise RenderError(f"template '{template_id}' ({chosen}): {error}") from None
        return RenderedMessage(template_id, chosen, subject, body)
