from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.auth.models import User
from django.forms.utils import flatatt
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import slugify

from workspace.access import workspaces_for
from workspace.models import IDLE_POLICY_FIELDS, SLUG_RULE, Role, Workspace


def style_fields(form: forms.BaseForm) -> None:
    """Give every widget Bootstrap's classes, marking the invalid ones."""
    for name, field in form.fields.items():
        widget = field.widget
        base = "form-select" if isinstance(widget, forms.Select) else "form-control"
        classes = widget.attrs.get("class", "").split()
        classes += [c for c in (base,) if c not in classes]
        # _errors, not errors: reading .errors here would validate before __init__ ends.
        if name in (form._errors or {}) and "is-invalid" not in classes:  # type: ignore[attr-defined]  # private, not in the stubs
            classes.append("is-invalid")
        widget.attrs["class"] = " ".join(classes)


class QuickSelect(forms.Select):
    """A `<select>` written in Python. Django renders every option through a template of
    its own (a tenth of a millisecond each), so a picker of a workspace's 500 computes took
    most of the job list's time. Options named in `disabled_values` are greyed out; a
    choice whose label is a list of choices is an `<optgroup>`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disabled_values: set[str] = set()

    def render(
        self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None
    ) -> SafeString:
        selected = {str(v) for v in self.format_value(value)}
        parts = []
        for option_value, label in self.choices:
            if isinstance(label, (list, tuple)):
                parts.append(f'<optgroup label="{escaped(option_value)}">')
                parts += self.option_tags(label, selected)
                parts.append("</optgroup>")
            else:
                parts += self.option_tags([(option_value, label)], selected)
        final = self.build_attrs(self.attrs, {**(attrs or {}), "name": name})
        return format_html("<select{}>{}</select>", flatatt(final), SafeString("".join(parts)))

    def option_tags(self, choices: Any, selected: set[str]) -> list[str]:
        # Plain string formatting: format_html per option cost as much as the templates.
        found = []
        for value, label in choices:
            key = str(value)
            flags = (" selected" if key in selected else "") + (
                " disabled" if key in self.disabled_values else ""
            )
            found.append(f'<option value="{escaped(key)}"{flags}>{escaped(label)}</option>')
        return found


class WrittenInput(forms.widgets.Input):
    """An `<input>` written in Python: Django renders each through three templates (about
    a tenth of a millisecond each), and an editable admin list has three a row."""

    def render(
        self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None
    ) -> SafeString:
        final = self.build_attrs(self.attrs, {**(attrs or {}), "type": self.input_type})
        final["name"] = name
        shown = self.format_value(value)
        if shown is not None:  # Django's input.html leaves an empty value out the same way
            final["value"] = shown
        # Django's attrs.html: True is the bare name, False and None are left out.
        written = "".join(
            f" {key}" if given is True else f' {key}="{escaped(given)}"'
            for key, given in final.items()
            if given is not False and given is not None
        )
        return SafeString(f"<input{written}>")


class WrittenNumberInput(WrittenInput, forms.NumberInput):
    pass


class WrittenTextInput(WrittenInput, forms.TextInput):
    pass


class WrittenHiddenInput(WrittenInput, forms.HiddenInput):
    pass


WRITTEN_INPUTS: dict[type[forms.Widget], type[forms.Widget]] = {
    forms.NumberInput: WrittenNumberInput,
    forms.TextInput: WrittenTextInput,
    forms.HiddenInput: WrittenHiddenInput,
}


def write_inputs(form: forms.BaseForm) -> None:
    """Render `form`'s plain inputs in Python. Each widget becomes its written subclass in
    place, keeping everything its field set on it (attrs, step, required)."""
    for field in form.fields.values():
        written = WRITTEN_INPUTS.get(type(field.widget))
        if written is not None:
            field.widget.__class__ = written


def escaped(text: Any) -> str:
    """`conditional_escape` without its lazy-string wrapper: what is safe already stays."""
    return text.__html__() if hasattr(text, "__html__") else html.escape(str(text))


if TYPE_CHECKING:
    FormBase = forms.BaseForm  # what the mixin is always combined with
else:
    FormBase = object


class StyledForm(FormBase):
    if TYPE_CHECKING:
        # Every clean() here returns the cleaned data (the stubs allow None for any form).
        def clean(self) -> dict[str, Any]: ...

    def full_clean(self) -> None:
        super().full_clean()
        style_fields(self)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        style_fields(self)


class WorkspaceCreateForm(StyledForm, forms.ModelForm):
    slug = forms.CharField(
        max_length=40,
        required=False,
        validators=[SLUG_RULE],
        help_text="Used in URLs; leave empty to derive it from the name. Cannot be changed later.",
    )

    class Meta:
        model = Workspace
        fields = ["name", "slug", "description"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].widget.attrs.update(autofocus=True, placeholder="e.g. Vision team")
        self.fields["slug"].widget.attrs.update(placeholder="vision-team")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Enter a name.")
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("slug") and cleaned.get("name"):
            derived = slugify(cleaned["name"])[:40].strip("-")
            if not derived:
                self.add_error("slug", "Choose a slug: the name has no letters or digits to use.")
            cleaned["slug"] = derived
            self.instance.slug = derived
        return cleaned


class WorkspaceSettingsForm(StyledForm, forms.ModelForm):
    class Meta:
        model = Workspace
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}

    def clean_name(self) -> str:
        return " ".join(self.cleaned_data["name"].split())


class AddMemberForm(StyledForm, forms.Form):
    identifier = forms.CharField(
        label="Username or email",
        max_length=254,
        widget=forms.TextInput(attrs={"placeholder": "bob or bob@example.com"}),
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.CONTRIBUTOR)


class ChangeRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class IdlePolicyForm(StyledForm, forms.ModelForm):
    class Meta:
        model = Workspace
        fields = list(IDLE_POLICY_FIELDS)
        labels = {
            "idle_min_minutes": "Shortest idle shutdown (min)",
            "idle_max_minutes": "Longest idle shutdown (min)",
            "idle_default_minutes": "Default for new instances (min; empty: off)",
            "idle_required": "Every instance must have idle shutdown",
            "reminder_leads": "Remind this many minutes before a stop",
            "keep_running_minutes": "“Keep running” adds (min)",
            "missed_start_window_minutes": "Run a missed scheduled start up to this late (min)",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["idle_required"].widget.attrs["class"] = "form-check-input"

    def clean_reminder_leads(self) -> str:
        raw = self.cleaned_data["reminder_leads"]
        try:
            leads = sorted({int(x) for x in raw.split(",") if x.strip()}, reverse=True)
        except ValueError:
            raise forms.ValidationError("Write minutes separated by commas, e.g. 30,5.") from None
        if not leads or any(not 1 <= lead <= 1440 for lead in leads) or len(leads) > 5:
            raise forms.ValidationError("Give 1 to 5 lead times, each 1 to 1440 minutes.")
        return ",".join(str(lead) for lead in leads)

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("idle_min_minutes"), cleaned.get("idle_max_minutes")
        default = cleaned.get("idle_default_minutes")
        if low is not None and high is not None:
            if low < 1 or high > 7 * 24 * 60:
                self.add_error("idle_max_minutes", "Idle limits go from 1 minute to 7 days.")
            elif low > high:
                self.add_error("idle_min_minutes", "The shortest cannot exceed the longest.")
            elif default is not None and not low <= default <= high:
                self.add_error("idle_default_minutes", f"Choose a default from {low} to {high}.")
        if cleaned.get("idle_required") and default is None:
            self.add_error("idle_default_minutes", "A required idle shutdown needs a default.")
        for name, top in (("keep_running_minutes", 1440), ("missed_start_window_minutes", 1440)):
            value = cleaned.get(name)
            if value is not None and not 1 <= value <= top:
                self.add_error(name, f"Choose 1 to {top} minutes.")
        return cleaned


class NodePlacementForm(StyledForm, forms.ModelForm):
    """Where the workspace's new nodes go when the site has several node hosts."""

    class Meta:
        model = Workspace
        fields = ["node_placement"]
        labels = {"node_placement": "Place new nodes"}
        help_texts = {
            "node_placement": "Binpack fills the fullest host that has room, keeping whole "
            "hosts free for large nodes. Spread picks the emptiest host, so a host that "
            "goes down takes fewer of your nodes with it. It matters only where the site "
            "has several node hosts; nodes already running stay where they are.",
        }


NEVER = "never"
TOKEN_LIFETIMES = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    (NEVER, "Never (until revoked)"),
]


class AccessTokenForm(StyledForm, forms.Form):
    """A new personal access token. Field names are `create_token`'s keywords, so its own
    refusals land on the field they are about."""

    name = forms.CharField(
        max_length=80,
        help_text="What uses it, so you know which one to revoke later.",
        error_messages={"required": "Name the token (what uses it, e.g. “laptop CLI”)."},
    )
    expires_in_days = forms.ChoiceField(
        label="Expires after",
        choices=TOKEN_LIFETIMES,
        initial="30",
        error_messages={"invalid_choice": "Choose one of the listed expiry periods."},
    )
    workspace = forms.ModelChoiceField(
        label="Workspaces it can reach",
        queryset=Workspace.objects.none(),
        required=False,
        empty_label="All my workspaces",
        help_text="Limit it to one workspace; it cannot reach the others.",
        error_messages={
            "invalid_choice": "You can only limit a token to a workspace you are a member of."
        },
    )
    read_only = forms.BooleanField(
        label="Read-only",
        required=False,
        help_text="It can read, but not start, stop, submit or change anything.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the user's own workspaces are choices: any other id is refused as invalid.
        workspace = self.fields["workspace"]
        assert isinstance(workspace, forms.ModelChoiceField)
        workspace.queryset = workspaces_for(user).order_by("name")
        self.fields["name"].widget.attrs.update(placeholder="e.g. laptop CLI")
        self.style_checkbox()

    def full_clean(self) -> None:
        super().full_clean()
        self.style_checkbox()

    def style_checkbox(self) -> None:
        # style_fields gives every widget form-control, which draws a checkbox as a text box.
        invalid = " is-invalid" if "read_only" in (self._errors or {}) else ""  # type: ignore[attr-defined]  # private, not in the stubs
        self.fields["read_only"].widget.attrs["class"] = "form-check-input" + invalid

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Name the token (what uses it, e.g. “laptop CLI”).")
        return name

    def clean_expires_in_days(self) -> int | None:
        chosen = self.cleaned_data["expires_in_days"]
        return None if chosen == NEVER else int(chosen)
