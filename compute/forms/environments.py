"""The form that makes an environment (or a new version of one)."""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator

from compute.forms.fields import parse_variables
from compute.rules.environments import SpecError, debian_packages, pip_requirements

ENVIRONMENT_NAME_RULE = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
    "Use up to 64 letters, digits, - and _, starting with a letter.",
)
MAX_LIST = 20_000


def list_area(rows: int, placeholder: str) -> forms.Textarea:
    return forms.Textarea(
        attrs={
            "rows": rows,
            "class": "font-monospace",
            "spellcheck": "false",
            "placeholder": placeholder,
        }
    )


class EnvironmentForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        validators=[ENVIRONMENT_NAME_RULE],
        help_text="An existing name makes its next version; jobs on the old one keep it.",
    )
    description = forms.CharField(max_length=300, required=False)
    debian_packages = forms.CharField(
        label="Debian packages",
        required=False,
        max_length=MAX_LIST,
        widget=list_area(3, "python3-numpy\npython3-sklearn"),
        help_text=(
            "From Debian 12 (bookworm), one per line or separated by spaces; python3 is always "
            "in. Debian's builds of numpy, scipy or scikit-learn install in seconds."
        ),
    )
    pip_requirements = forms.CharField(
        label="pip requirements",
        required=False,
        max_length=MAX_LIST,
        widget=list_area(3, "transformers==4.46.0\ntqdm"),
        help_text="Names, extras and versions from the package index; wheels only, no URL.",
    )
    variables = forms.CharField(
        label="Environment variables",
        required=False,
        widget=list_area(2, "OMP_NUM_THREADS=2"),
        help_text="One KEY=value per line, set for every job in this environment.",
    )

    def clean_debian_packages(self) -> str:
        return self.checked("debian_packages", debian_packages)

    def clean_pip_requirements(self) -> str:
        return self.checked("pip_requirements", pip_requirements)

    def clean_variables(self) -> dict[str, str]:
        return parse_variables(self.cleaned_data["variables"])

    def checked(self, field: str, check) -> str:
        text = self.cleaned_data[field]
        try:
            check(text)
        except SpecError as exc:
            raise forms.ValidationError(str(exc)) from None
        return text
