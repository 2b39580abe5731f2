"""The pickers written in Python (workspace.forms.QuickSelect) say what Django's Select
says: the chosen option, greyed-out ones, groups, and every label escaped."""

from __future__ import annotations

import re

from django import forms

from workspace.forms import QuickSelect, WrittenInput, write_inputs


class Pick(forms.Form):
    target = forms.ChoiceField(widget=QuickSelect)


def test_a_picker_marks_the_choice_greys_out_refusals_and_escapes_labels() -> None:
    form = Pick(data={"target": "2"})
    form.fields["target"].choices = [
        ("", "Choose…"),
        ("GPU <fast>", [("1", 'big & "quoted"'), ("2", "ok")]),
        ("3", "<script>alert(1)</script>"),
    ]
    form.fields["target"].widget.disabled_values = {"1"}
    html = str(form["target"])
    assert html.startswith('<select name="target"') or 'name="target"' in html
    assert '<optgroup label="GPU &lt;fast&gt;">' in html
    assert '<option value="1" disabled>big &amp; &quot;quoted&quot;</option>' in html
    assert '<option value="2" selected>ok</option>' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'id="id_target"' in html and " required" in html
    assert form.is_valid() and form.cleaned_data["target"] == "2"


class Typed(forms.Form):
    label = forms.CharField(required=True)
    amount = forms.DecimalField(decimal_places=3, required=False)
    key = forms.IntegerField(widget=forms.HiddenInput)


def test_written_inputs_are_djangos_inputs_with_hostile_values_escaped() -> None:
    """write_inputs (the admin's editable lists) gives the inputs Django's own attributes,
    whatever order they come in, and escapes a value that tries to leave its quotes."""
    hostile = '"><script>alert(1)</script>'
    plain = Typed(initial={"label": hostile, "amount": "0.5", "key": 7})
    written = Typed(initial={"label": hostile, "amount": "0.5", "key": 7})
    write_inputs(written)
    for name in ("label", "amount", "key"):
        assert isinstance(written.fields[name].widget, WrittenInput)
        assert tags(str(written[name])) == tags(str(plain[name])), name
    assert "<script>" not in str(written["label"])


def tags(html: str) -> list[tuple[str, frozenset]]:
    """Each input tag as its name and set of attributes (the order aside)."""
    found = []
    for tag in re.findall(r"<input\b[^>]*>", html):
        attrs = frozenset(re.findall(r'\s([\w-]+)(?:="([^"]*)")?', tag))
        found.append(("input", attrs))
    return found
