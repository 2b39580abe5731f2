"""Registering a trained model: its files stored read-only (atomic, capped, never shared
between workspaces), named and versioned."""

from __future__ import annotations

import os
from typing import IO

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from compute.inference.models import ModelKind, RegisteredModel
from compute.lib import snapshots
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role


def register_model(
    access: WorkspaceAccess,
    *,
    name: str,
    file_name: str,
    data: bytes | IO[bytes],
    description: str = "",
) -> RegisteredModel:
    """A new model, or the next version of the model of that name. A .zip or a tar
    (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) is a folder, unpacked; anything else is one
    file. Nothing is kept when the files are refused."""
    require_role(access, Role.CONTRIBUTOR, "registering models")
    if file_name.lower().endswith(".zip"):
        kind = ModelKind.ZIP
    elif snapshots.is_tar_name(file_name):
        kind = ModelKind.TAR
    else:
        kind = ModelKind.FILE
    store = snapshots.model_store()
    with transaction.atomic():
        latest = (
            RegisteredModel.objects.select_for_update()
            .filter(workspace=access.workspace, name=name)
            .aggregate(latest=Max("version"))["latest"]
        )
        model = RegisteredModel.objects.create(
            workspace=access.workspace,
            name=name,
            version=(latest or 0) + 1,
            description=description,
            kind=kind,
            file_name=file_name[:200],
            created_by=access.membership.user,
        )
        stored = False
        try:
            if kind == ModelKind.ZIP:
                snapshots.store_zip(model.pk, data, store)
            elif kind == ModelKind.TAR:
                snapshots.store_tar(model.pk, data, store)
            else:
                snapshots.store_file(model.pk, file_name, data, store)
            stored = True
            if not any(files for _, _, files in os.walk(store.folder(model.pk))):
                raise snapshots.CodeError("The zip holds no files: there is no model in it.")
            model.size_bytes = folder_size(store.folder(model.pk))
            model.save(update_fields=["size_bytes"])
        except snapshots.CodeError as exc:
            if stored:
                snapshots.remove_tree(store.folder(model.pk))
            raise ValidationError({"upload": str(exc)}) from None
        except BaseException:
            # Rolled back: its id may come again (SQLite) and must find no folder.
            if stored:
                snapshots.remove_tree(store.folder(model.pk))
            raise
    return model


def folder_size(folder: os.PathLike[str] | str) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        total += sum(os.lstat(os.path.join(parent, name)).st_size for name in files)
    return total
