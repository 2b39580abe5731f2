"""What an environment's image is made of: its packages checked, and reduced to one spec
whose hash names the image (pure: no I/O).

A workspace member writes these lists, and the build runs them on this machine, so they
are hostile input. A Debian package is a name (and a version) from Debian's own signed
archive. A pip requirement is a name, extras and version specifiers only: no URL, no path,
no option (`--index-url`, `-r`, `-e`), and the build installs wheels only
(`--only-binary=:all:`), so no package's own code runs while the image is built.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

# Changed whenever the way an image is built changes: every spec then hashes anew.
BUILDER_VERSION = 1
DEBIAN_SUITE = "bookworm"  # every node image's (compute/lib/images.py)
# Always in an environment's image: what a node and a job need (DESIGN.md, node rules).
BASE_PACKAGES = ("python3", "ca-certificates")
# In the image when it has pip requirements (pip installs them, and a job may use it).
PIP_PACKAGES = ("python3-pip",)
# Debian policy 5.6.1 (a package name), with an optional "=version" (5.6.12).
DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?")
MAX_PACKAGES = 200
MAX_LINE = 200


class SpecError(ValueError):
    """A list that cannot be built, in words for the form field it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class ImageSpec:
    """What one image holds: equal specs are one image, built once."""

    debian_packages: tuple[str, ...]
    pip_requirements: tuple[str, ...]

    @property
    def packages_to_install(self) -> tuple[str, ...]:
        extra = PIP_PACKAGES if self.pip_requirements else ()
        return tuple(sorted({*BASE_PACKAGES, *extra, *self.debian_packages}))

    @property
    def hash(self) -> str:
        canonical = json.dumps(
            {
                "builder": BUILDER_VERSION,
                "suite": DEBIAN_SUITE,
                "debian": list(self.packages_to_install),
                "pip": list(self.pip_requirements),
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"hangar/env-{self.hash}"


def lines_of(text: str) -> list[str]:
    """The entries of a list as written: one per line (or separated by spaces or commas
    for Debian packages), blank lines and # comments left out."""
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(line)
    return entries


def debian_packages(text: str) -> tuple[str, ...]:
    names = [name for line in lines_of(text) for name in re.split(r"[\s,]+", line) if name]
    if len(names) > MAX_PACKAGES:
        raise SpecError("debian_packages", f"At most {MAX_PACKAGES} Debian packages.")
    for name in names:
        if not DEBIAN_PACKAGE.fullmatch(name):
            raise SpecError(
                "debian_packages",
                f"{name[:MAX_LINE]!r} is not a Debian package name (lowercase letters, "
                "digits, + - and ., optionally =version).",
            )
    return tuple(sorted(set(names)))


def pip_requirements(text: str) -> tuple[str, ...]:
    entries = lines_of(text)
    if len(entries) > MAX_PACKAGES:
        raise SpecError("pip_requirements", f"At most {MAX_PACKAGES} pip requirements.")
    found: dict[str, str] = {}
    for line in entries:
        shown = line[:MAX_LINE]
        if len(line) > MAX_LINE or line.startswith("-"):
            raise SpecError(
                "pip_requirements",
                f"{shown!r}: only requirements (name, extras, versions) are allowed, no pip "
                "options.",
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise SpecError("pip_requirements", f"{shown!r} is not a requirement: {exc}.") from None
        if requirement.url:
            raise SpecError(
                "pip_requirements",
                f"{shown!r}: a URL or a path is not allowed; name a package on the index.",
            )
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()  # PEP 503's normal form
        if key in found:
            raise SpecError("pip_requirements", f"{requirement.name} is listed twice.")
        requirement.name = key
        found[key] = str(requirement)
    return tuple(sorted(found.values()))


def image_spec(debian_text: str, pip_text: str) -> ImageSpec:
    return ImageSpec(debian_packages(debian_text), pip_requirements(pip_text))
