"""The pickers written in Python (workspace.forms.QuickSelect) say what Django's Select
says: the chosen option, greyed-out ones, groups, and every label escaped."""

from __future__ import annotations

from django import forms

from workspace.forms import QuickSelect


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
