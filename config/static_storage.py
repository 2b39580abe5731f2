"""Static files as production serves them, also under `make run` (DEBUG): Django's manifest
storage names files by their hash only when DEBUG is off; this one always does once the
files are built (HANGAR_STATIC_BUILT), so `make run` pages load what production loads,
cached for a year, compressed once (WhiteNoise)."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class BuiltStaticFiles(CompressedManifestStaticFilesStorage):
    def url(self, name: str | None, force: bool = False) -> str:
        return super().url(name, force=True)
