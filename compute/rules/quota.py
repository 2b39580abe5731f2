"""Quota arithmetic: how a change of cores sits against a limit (no queries)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from compute.models import VmFamily


def default_family_limit(family: VmFamily) -> int:
    return 0 if family.restricted else settings.HANGAR_DEFAULT_FAMILY_CORES


@dataclass(frozen=True)
class Check:
    """How a change of cores sits against the limit: words for users, numbers for code."""

    pool: str  # "DSv2" or "low-priority"
    need: int
    limit: int
    used: int
    restricted_unapproved: bool = False

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def short(self) -> int:
        return max(0, self.need - self.free)

    @property
    def fits(self) -> bool:
        return self.short == 0

    @property
    def message(self) -> str:
        if self.restricted_unapproved:
            return (
                f"{self.pool} is a restricted family: it needs an approved quota before "
                "first use. Request cores for it."
            )
        if self.fits:
            return f"Uses {self.need} of your {self.free} free {self.pool} cores."
        return (
            f"Short {self.short} cores: needs {self.need} {self.pool} cores, "
            f"limit {self.limit}, used {self.used}."
        )
