"""Forms of attached computes: one per kind, validated before anything is stored.

Secrets are write-only: the fields never render a stored value back; on the edit form an
empty field keeps what is stored ("set — replace").
"""

from __future__ import annotations

import ipaddress
import re

from django import forms
from django.conf import settings

from compute.actions.attached import Connection, attach
from compute.lib import ssh
from compute.models import Attachment, Compute, SecretKind
from compute.models.compute import COMPUTE_NAME_RULE
from compute.rules import netpolicy
from compute.rules.targets import Kind
from workspace.access import WorkspaceAccess
from workspace.forms import StyledForm

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
USERNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def clean_address(value: str) -> str:
    value = value.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value) or not HOSTNAME.match(value):
        raise forms.ValidationError(
            f"“{value}” is not a host name or an IP address. "
            "Enter e.g. gpu-box.lab, 10.0.0.5 or ::1 (no scheme, user or port)."
        )
    return value.lower()


class AttachForm(StyledForm, forms.Form):
    name = forms.CharField(
        max_length=24,
        validators=[COMPUTE_NAME_RULE],
        help_text="3 to 24 letters, digits and hyphens; unique in this workspace.",
    )
    host = forms.CharField(max_length=253)
    port = forms.IntegerField(
        label="SSH port",
        initial=22,
        min_value=1,
        max_value=65535,
        error_messages={
            "min_value": "Choose a port from 1 to 65535.",
            "max_value": "Choose a port from 1 to 65535.",
        },
    )
    username = forms.CharField(max_length=32, help_text="The account jobs run as over there.")
    secret_kind = forms.ChoiceField(
        label="Sign in with",
        choices=SecretKind.choices,
        initial=SecretKind.KEY,
        widget=forms.RadioSelect,
    )
    private_key = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 5,
                "class": "font-monospace",
                "spellcheck": "false",
                "autocomplete": "off",
                "placeholder": "-----BEGIN OPENSSH PRIVATE KEY-----",
            }
        ),
        help_text="A key without a passphrase, used by Hangar alone. Stored encrypted.",
    )
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; a key is safer.",
    )
    max_concurrent_jobs = forms.IntegerField(
        label="Jobs at once",
        min_value=1,
        max_value=64,
        help_text="More jobs than this wait in the queue.",
    )

    def __init__(self, *args, kind: Kind, stored: Attachment | None = None, **kwargs) -> None:
        """`stored` makes it the edit form of that attachment: its values, never its secret."""
        if stored is not None:
            kwargs["initial"] = {
                "host": stored.host,
                "port": stored.port,
                "username": stored.username,
                "secret_kind": stored.secret_kind or SecretKind.KEY,
                "max_concurrent_jobs": stored.max_concurrent_jobs,
            }
        super().__init__(*args, **kwargs)
        self.kind = kind
        # An empty secret field keeps the stored secret, of the same kind only.
        self.stored_secret_kind = stored.secret_kind if stored and stored.secret else ""
        editing = stored is not None
        has_secret = bool(self.stored_secret_kind)
        if not editing:
            self.fields["max_concurrent_jobs"].initial = settings.HANGAR_ATTACHED_JOBS_PER_TARGET
        self.fields["host"].label = kind.host_label
        if not kind.connects_over_ssh:
            for field in ("host", "port", "username", "secret_kind", "private_key", "password"):
                del self.fields[field]
        elif editing and has_secret:
            for field in ("private_key", "password"):
                self.fields[field].widget.attrs["placeholder"] = "set — replace"
                self.fields[field].help_text = "Set. Leave empty to keep it; type to replace it."
        if editing:
            del self.fields["name"]
            if kind.connects_over_ssh:
                self.fields["forget_host_key"] = forms.BooleanField(
                    required=False,
                    label="Forget the pinned host key (the machine was rebuilt)",
                    help_text="The next validation pins the key it is offered.",
                )

    def clean_host(self) -> str:
        host = clean_address(self.cleaned_data["host"])
        # A literal address is checked here, before anything is stored. A name is resolved
        # and checked by the worker right before each connect (and the checked address is
        # the one it connects to): a name can point elsewhere by then anyway, and a page
        # should not make DNS queries on behalf of whoever fills in a form.
        if netpolicy.is_literal(host):
            try:
                netpolicy.check_host(host)
            except netpolicy.AddressDenied as exc:
                raise forms.ValidationError(str(exc)) from None
        return host

    def clean_username(self) -> str:
        value = self.cleaned_data["username"].strip()
        if not USERNAME.match(value):
            raise forms.ValidationError(
                "Use a Unix user name: up to 32 letters, digits, _ . -, not starting with a digit."
            )
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.kind.connects_over_ssh or self.errors:
            return cleaned
        kind = cleaned.get("secret_kind")
        key, password = cleaned.get("private_key", ""), cleaned.get("password", "")
        keeps = kind == self.stored_secret_kind  # an empty field keeps the stored secret
        if kind == SecretKind.KEY:
            if key.strip():
                try:
                    ssh.parse_private_key(key)
                except ValueError as exc:
                    self.add_error("private_key", str(exc))
            elif not keeps:
                self.add_error("private_key", "Paste the private key Hangar signs in with.")
            cleaned["secret"] = key.strip() + "\n" if key.strip() else ""
        else:
            if not password and not keeps:
                self.add_error("password", "Enter the password.")
            cleaned["secret"] = password
        return cleaned

    def attach(self, access: WorkspaceAccess) -> Compute:
        """Attach the machine this valid create form describes (the page's and the API's
        one way); a worker validates it right after."""
        return attach(
            access,
            target_kind=self.kind.key,
            name=self.cleaned_data["name"],
            max_concurrent_jobs=self.cleaned_data["max_concurrent_jobs"],
            connection=self.connection(),
        )

    def connection(self) -> Connection | None:
        """How to reach the target, from valid data; None for kinds that need no SSH."""
        if not self.kind.connects_over_ssh:
            return None
        data = self.cleaned_data
        return Connection(
            host=data["host"],
            port=data["port"],
            username=data["username"],
            secret_kind=data["secret_kind"],
            secret=data["secret"],
        )
