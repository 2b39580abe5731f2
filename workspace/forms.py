from __future__ import annotations

from django import forms
from django.utils.text import slugify

from workspace.models import SLUG_RULE, Role, Workspace


def style_fields(form: forms.BaseForm) -> None:
    """Give every widget Bootstrap's classes, marking the invalid ones."""
    for name, field in form.fields.items():
        widget = field.widget
        base = "form-select" if isinstance(widget, forms.Select) else "form-control"
        classes = widget.attrs.get("class", "").split()
        classes += [c for c in (base,) if c not in classes]
        # _errors, not errors: reading .errors here would validate before __init__ ends.
        if name in (form._errors or {}) and "is-invalid" not in classes:
            classes.append("is-invalid")
        widget.attrs["class"] = " ".join(classes)


class StyledForm:
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
