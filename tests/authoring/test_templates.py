"""Templates are checked before anything runs: `validate` renders every template a journey's
messages name, in every locale it has, against sample data (the journey's `sample` over the
template's own) in the sender's sandbox; `simulate` and `deploy` refuse a missing template."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from app.cli import main

JOURNEY = """\
id: offers
version: 1
entry: {event: signed_up}
steps:
  offer: {type: message, channel: email, template: offer, next: tip}
  tip: {type: message, channel: push, template: %s}
"""
OFFER = """\
en: {subject: "An offer", body: "Hi {{ first_name }}, {{ event.plan }} is yours."}
fr: {subject: "Une offre", body: "Bonjour {{ first_name }}, {{ event.plan }} est à vous."}
"""


def run(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args), env={"TEMPLATES_DIR": str(tmp_path)})
    return result.exit_code, result.output.replace(str(tmp_path), "").splitlines()


def write(tmp_path: Path, journey: str, **templates: str) -> str:
    for name, text in templates.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    path = tmp_path / "j.yaml"
    path.write_text(journey)
    return str(path)


def test_validate_reports_missing_templates_and_variables_in_every_locale(tmp_path: Path) -> None:
    path = write(tmp_path, JOURNEY % "no_such_template", offer=OFFER)
    code, lines = run(tmp_path, "validate", path)
    assert code == 1
    assert lines == [
        "/j.yaml:6: at /steps/tip/template: found 'no_such_template', "
        "expected a template in  (no no_such_template.yaml there)",
        "/j.yaml:5: at /steps/offer/template: found a render error: template 'offer' (en), "
        "in the body: a missing variable: 'first_name' is undefined, expected a template that "
        "renders with the sample variables (`sample:` in the journey or template)",
        "/j.yaml:5: at /steps/offer/template: found a render error: template 'offer' (fr), "
        "in the body: a missing variable: 'first_name' is undefined, expected a template that "
        "renders with the sample variables (`sample:` in the journey or template)",
    ]
    tip = "en: {body: 'A tip'}\n"
    sampled = OFFER + "sample: {first_name: Ada, event: {plan: free}}\n"
    path = write(tmp_path, JOURNEY % "tip", offer=sampled, tip=tip)
    assert run(tmp_path, "validate", path) == (0, ["/j.yaml: ok (offers version 1, 2 steps)"])
    # The journey's sample wins over the template's: here it lacks what the template needs.
    path = write(tmp_path, JOURNEY % "tip" + "sample: {event: {}}\n", offer=sampled, tip=tip)
    code, lines = run(tmp_path, "validate", path)
    assert code == 1 and len(lines) == 2
    assert "a missing variable: 'dict object' has no attribute 'plan'" in lines[0]


def test_validate_reports_sandbox_violations_and_a_missing_default_locale(
    tmp_path: Path,
) -> None:
    unsafe = "en: {body: \"{{ ''.__class__.__mro__ }}\"}\n"
    french = "fr: {body: 'Bonjour'}\n"
    path = write(tmp_path, JOURNEY.replace("offer", "unsafe") % "french", unsafe=unsafe,
                 french=french)  # fmt: skip
    code, lines = run(tmp_path, "validate", path)
    assert code == 1
    assert [line.split(", expected")[0] for line in lines] == [
        "/j.yaml:5: at /steps/unsafe/template: found a render error: template 'unsafe' (en), "
        "in the body: a sandbox violation: access to attribute '__class__' of 'str' object is "
        "unsafe.",
        "/j.yaml:6: at /steps/tip/template: found a template 'french' with locales fr",
    ]
    assert lines[1].endswith("expected a variant for the default locale 'en'")


def test_simulate_and_deploy_refuse_a_missing_template(tmp_path: Path) -> None:
    path = write(tmp_path, JOURNEY % "no_such_template", offer=OFFER)
    events = tmp_path / "e.jsonl"
    events.write_text('{"event_id": "1", "user_id": "u", "name": "signed_up", '
                      '"at": "2026-11-02T09:00:00Z"}\n')  # fmt: skip
    refusal = [
        "Error: /j.yaml:6: at /steps/tip/template: found 'no_such_template', "
        "expected a template in  (no no_such_template.yaml there)"
    ]
    assert run(tmp_path, "simulate", path, "--events", str(events)) == (1, refusal)
    # Refused before any server is asked: no MongoDB is needed to see it.
    assert run(tmp_path, "deploy", path) == (1, refusal)


def test_validate_renders_the_html_in_its_layout_with_its_partials(tmp_path: Path) -> None:
    (tmp_path / "layouts").mkdir()
    (tmp_path / "partials").mkdir()
    (tmp_path / "layouts" / "default.html").write_text(
        "<html>{{ preheader }}{{ content }}{% include 'partials/footer.html' %}</html>"
    )
    (tmp_path / "partials" / "footer.html").write_text("<p>{{ company }}</p>")
    (tmp_path / "partials" / "broken.html").write_text("<p>\n{% if %}</p>")
    offer = (
        "en:\n"
        "  subject: 'An offer'\n"
        "  preheader: 'For {{ first_name }}'\n"
        "  body: 'Hi {{ first_name }}'\n"
        "  html: '<p>{{ first_name }}, {{ event.plan }}</p>'\n"
        "fr: {subject: 'Une offre', body: 'Bonjour', html: '{% include \"partials/broken.html\" %}'"
        "}\n"
        "de: {subject: 'Angebot', body: 'Hallo', html: '<p>Hallo</p>', layout: fancy}\n"
        "it: {subject: 'Offerta', body: 'Ciao', htm: '<p>Ciao</p>'}\n"
        "sample: {first_name: Ada}\n"
    )
    tip = "en: {subject: '', body: 'A tip', from: 'not an address'}\n"
    path = write(tmp_path, JOURNEY.replace("push", "email") % "tip", offer=offer, tip=tip)
    code, lines = run(tmp_path, "validate", path)
    assert code == 1
    assert [line.split(", expected")[0] for line in lines] == [
        "/j.yaml:5: at /steps/offer/template: found a broken template: template 'offer' (it): "
        "found the unknown key 'htm'",
        "/j.yaml:6: at /steps/tip/template: found a render error: template 'tip' (en), from: "
        "found 'not an address'",
    ]
    offer = offer.replace("it: {subject: 'Offerta', body: 'Ciao', htm: '<p>Ciao</p>'}\n", "")
    tip = "en: {subject: '', body: 'A tip', from: 'Tips <tips@x.test>'}\n"
    path = write(tmp_path, JOURNEY.replace("push", "email") % "tip", offer=offer, tip=tip)
    code, lines = run(tmp_path, "validate", path)
    assert code == 1
    assert [line.split(", expected")[0] for line in lines] == [
        "/j.yaml:5: at /steps/offer/template: found a render error: template 'offer' (en), "
        "in the html: a missing variable: 'event' is undefined",
        "/j.yaml:5: at /steps/offer/template: found a render error: template 'offer' (fr), "
        "in the html: partials/broken.html, line 2: Expected an expression, got 'end of statement "
        "block'",
        "/j.yaml:5: at /steps/offer/template: found a render error: template 'offer' (de): "
        "no layout 'fancy' (expected /layouts/fancy.html)",
        "/j.yaml:6: at /steps/tip/template: found an email template 'tip' (en) with an empty "
        "subject",
    ]
    # The layout's own variables count too; with every variable there, the journey is valid.
    fixed = offer.replace('{% include "partials/broken.html" %}', "<p>Bonjour</p>")
    fixed = fixed.replace(", layout: fancy", "")
    tip = "en: {subject: 'A tip', body: 'A tip', from: 'Tips <tips@x.test>'}\n"
    sample = "sample: {event: {plan: pro}}\n"
    path = write(tmp_path, JOURNEY.replace("push", "email") % "tip" + sample, offer=fixed, tip=tip)
    code, lines = run(tmp_path, "validate", path)
    assert code == 1 and len(lines) == 3
    assert all("in the layout 'default': a missing variable: 'company'" in line for line in lines)
    path = write(
        tmp_path,
        JOURNEY.replace("push", "email") % "tip" + "sample: {event: {plan: pro}, company: Acme}\n",
        offer=fixed,
        tip=tip,
    )
    assert run(tmp_path, "validate", path) == (0, ["/j.yaml: ok (offers version 1, 2 steps)"])
