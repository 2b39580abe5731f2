"""The admin's form of a node host (compute/admin.py).

The TLS client material is write-only, as attached computes' secrets are: the three
fields never render what is stored, an empty field keeps it, and what is typed is stored
encrypted (compute/lib/secrets.py). A tcp:// engine without TLS is refused: Docker's API
on a plain TCP port is root on that machine for anyone who reaches the port, and the
jobs' secret variables would cross the network in clear.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django import forms

from compute.lib import secrets
from compute.models import NodeHost

SCHEMES = ("unix", "tcp", "ssh")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,39}$")
TLS_FIELDS = ("tls_ca", "tls_cert", "tls_key")
PEM_KIND = {"tls_ca": "CERTIFICATE", "tls_cert": "CERTIFICATE", "tls_key": "PRIVATE KEY"}
NO_PLAIN_TCP = (
    "A tcp:// engine needs TLS: give the CA, the client certificate and its key. Docker's "
    "API on a plain TCP port is root on that machine for anyone who reaches the port. "
    "Without certificates, use ssh://user@host instead."
)


def clean_docker_url(value: str) -> str:
    """unix:///path, tcp://host:port or ssh://[user@]host[:port]; nothing else."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in SCHEMES:
        raise forms.ValidationError(
            "Give a unix://, tcp:// or ssh:// URL, e.g. unix:///var/run/docker.sock, "
            "tcp://gpu-box-2:2376 or ssh://ml@gpu-box-2."
        )
    if parts.query or parts.fragment:
        raise forms.ValidationError("The URL takes no ?query or #fragment.")
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise forms.ValidationError(
                "A unix:// URL names a socket by its absolute path: unix:///var/run/docker.sock."
            )
        return value
    try:
        port = parts.port
    except ValueError:
        raise forms.ValidationError("The port is not a number from 1 to 65535.") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise forms.ValidationError(
            f"A {parts.scheme}:// URL names a machine: {parts.scheme}://"
            + ("gpu-box-2:2376." if parts.scheme == "tcp" else "ml@gpu-box-2.")
        )
    if parts.scheme == "tcp" and port is None:
        raise forms.ValidationError("Give the engine's port: tcp://gpu-box-2:2376.")
    if parts.password is not None:
        raise forms.ValidationError("No password in the URL: ssh:// logs in with a key.")
    return value


def parse_labels(text: str) -> list[str]:
    labels: list[str] = []
    for raw in text.split(","):
        label = raw.strip()
        if not label:
            continue
        if not LABEL.match(label):
            raise forms.ValidationError(
                f"“{label[:40]}” is not a label: letters, digits and _ . : = - "
                "(up to 40, starting with a letter or digit)."
            )
        if label not in labels:
            labels.append(label)
    if len(labels) > 20:
        raise forms.ValidationError("Up to 20 labels.")
    return labels


class NodeHostForm(forms.ModelForm):
    labels_text = forms.CharField(
        label="Labels",
        required=False,
        help_text="Comma-separated, e.g. gpu, zone-a.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    tls_ca = forms.CharField(
        label="TLS CA certificate",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70, "autocomplete": "off"}),
    )
    tls_cert = forms.CharField(
        label="TLS client certificate",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70, "autocomplete": "off"}),
    )
    tls_key = forms.CharField(
        label="TLS client key",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 70, "autocomplete": "off"}),
    )
    clear_tls = forms.BooleanField(
        label="Remove the stored TLS material",
        required=False,
        help_text="For an engine that moves to ssh:// or unix://.",
    )

    class Meta:
        model = NodeHost
        fields = [
            "name",
            "docker_url",
            "on_this_machine",
            "cpus_override",
            "memory_gib_override",
            "gpus_override",
        ]
        labels = {
            "docker_url": "Docker URL",
            "on_this_machine": "On this machine",
            "cpus_override": "Cores (override)",
            "memory_gib_override": "Memory GiB (override)",
            "gpus_override": "GPUs (override)",
        }
        help_texts = {
            "on_this_machine": "It may run serving replicas and batch scoring nodes, which "
            "read folders of this machine.",
            "cpus_override": "Empty: what the engine reports.",
            "memory_gib_override": "Empty: what the engine reports.",
            "gpus_override": "Empty: what the engine reports (NVIDIA generic resources).",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # What is stored, kept aside: whatever form class the admin builds around this one,
        # the instance's TLS fields end up as stored, replaced or removed (save), never as
        # posted text.
        self.stored_tls = {name: getattr(self.instance, name) for name in TLS_FIELDS}
        self.fields["labels_text"].initial = ", ".join(self.instance.labels or [])
        for name in TLS_FIELDS:
            stored = bool(getattr(self.instance, name))
            self.fields[name].help_text = (
                "Set — leave empty to keep it, paste a new one to replace it."
                if stored
                else "Not set. PEM, pasted whole."
            )
            # Never rendered back, whatever is stored or was posted.
            self.initial[name] = ""
        if self.instance.pk:
            self.fields["name"].disabled = True  # containers and events are named after it
            self.fields["name"].help_text = "Fixed once the host exists."

    def clean_docker_url(self) -> str:
        return clean_docker_url(self.cleaned_data["docker_url"])

    def clean_labels_text(self) -> list[str]:
        return parse_labels(self.cleaned_data.get("labels_text") or "")

    def clean(self) -> dict:
        cleaned: dict = super().clean() or self.cleaned_data
        typed = {name: cleaned.get(name) or "" for name in TLS_FIELDS}
        for name, text in typed.items():
            if text and "-----BEGIN" not in text:
                self.add_error(name, "Paste the PEM text, from -----BEGIN to -----END.")
            elif text and not re.search(rf"-----BEGIN [A-Z0-9 ]*{PEM_KIND[name]}-----", text):
                self.add_error(name, f"This is not a PEM {PEM_KIND[name].lower()}.")
        if cleaned.get("clear_tls"):
            if any(typed.values()):
                self.add_error("clear_tls", "Remove the stored material or paste new, not both.")
            will_have = dict.fromkeys(TLS_FIELDS, False)
        else:
            will_have = {name: bool(typed[name] or self.stored_tls[name]) for name in TLS_FIELDS}
        if any(will_have.values()) and not all(will_have.values()):
            missing = [self.fields[n].label for n in TLS_FIELDS if not will_have[n]]
            self.add_error(None, f"TLS needs all three: missing {', '.join(map(str, missing))}.")
        scheme = urlsplit(cleaned.get("docker_url") or "").scheme
        if scheme == "tcp" and not all(will_have.values()):
            self.add_error("docker_url", NO_PLAIN_TCP)
        elif scheme in ("unix", "ssh") and any(will_have.values()):
            self.add_error(
                "docker_url",
                f"TLS certificates are for tcp:// only; a {scheme}:// engine does not use them "
                "(tick “Remove the stored TLS material”).",
            )
        return cleaned

    def save(self, commit: bool = True) -> NodeHost:
        host = super().save(commit=False)
        host.labels = self.cleaned_data["labels_text"]
        for name in TLS_FIELDS:
            typed = self.cleaned_data.get(name) or ""
            if typed:
                setattr(host, name, secrets.encrypt(typed))
            elif self.cleaned_data.get("clear_tls"):
                setattr(host, name, "")
            else:
                setattr(host, name, self.stored_tls[name])
        if commit:
            host.save()
        return host
