"""Form pieces for environment variables: KEY=value lines, and the write-only textarea of
secret variables (a page never renders a secret back, not even to whoever typed it)."""

from __future__ import annotations

import re
from typing import Any

from django import forms

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"}
MAX_VARIABLES = 100
MAX_VALUE = 32_768


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value: a form shown again after an error asks for secrets anew,
    so they appear in no response."""

    def format_value(self, value: Any) -> None:
        return None


def secret_variables_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        label="Secret variables",
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(
            attrs={
                "rows": 2,
                "class": "font-monospace",
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "API_TOKEN=…",
            }
        ),
        help_text=help_text,
    )


def parse_variables(text: str, secret: bool = False) -> dict[str, str]:
    """{KEY: value} from KEY=value lines; a message names the line, never its value."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not ENV_KEY.match(key):
            example = "API_TOKEN=…" if secret else "EPOCHS=3"
            raise forms.ValidationError(f"Line {number}: write KEY=value, e.g. {example}.")
        if key in RESERVED or key.startswith("HANGAR_"):
            raise forms.ValidationError(f"Line {number}: {key} is set by Hangar for each node.")
        if key in result:
            raise forms.ValidationError(f"Line {number}: {key} is given twice.")
        if "\0" in value or len(value) > MAX_VALUE:
            raise forms.ValidationError(f"Line {number}: the value of {key} is not usable.")
        result[key] = value
    if len(result) > MAX_VARIABLES:
        raise forms.ValidationError(f"At most {MAX_VARIABLES} variables.")
    return result


def check_disjoint(form: forms.Form, plain: dict[str, str], secret: dict[str, str]) -> None:
    both = sorted(set(plain) & set(secret))
    if both:
        form.add_error(
            "secret_environment", f"{', '.join(both)}: give each variable once, plain or secret."
        )
