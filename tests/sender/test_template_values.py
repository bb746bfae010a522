"""A template expression that fails on a user's value (`{{ name + 1 }}`, `tojson` of something
that is not JSON, a division by zero) is a render error of that one send, as a missing variable
is, never an exception that escapes the sender; and it does not quote the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.sender.templates import RenderError, TemplateStore


@pytest.mark.parametrize(
    ("body", "variables"),
    [
        ("Hi {{ first_name + 1 }}", {"first_name": "Ana Lima"}),
        ("{{ 10 / score }}", {"score": 0}),
        ('{{ "%d" % first_name }}', {"first_name": "Ana Lima"}),
    ],
)
def test_an_expression_failing_on_a_value_is_a_render_error(
    tmp_path: Path, body: str, variables: dict
) -> None:
    (tmp_path / "note.yaml").write_text(f"en:\n  subject: Hello\n  body: '{body}'\n")
    with pytest.raises(RenderError) as caught:
        TemplateStore(tmp_path, "en").render("note", "en", variables)
    assert "an expression failed" in str(caught.value)
    assert "Ana Lima" not in str(caught.value)
