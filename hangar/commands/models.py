"""`hangar model ...`: registered models, a trained model's file or a .zip of its folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hangar.commands.common import connected, lists, output_of, shows, uploading
from hangar.commands.registry import command, group
from hangar.output import Failure, Fields, Output, show_fields, size_text, when

if TYPE_CHECKING:
    from hangar.client import Model

group("model", "Registered models: a trained model's file, or a .zip of its folder.")


def model_row(m: Model) -> list[object]:
    return [
        m["id"],
        m["name"],
        m["version"],
        m["kind"],
        size_text(m["size_bytes"]),
        m["file_name"],
        m["created_by"],
        when(m["created_at"]),
    ]


def model_fields(model: Model) -> Fields:
    return [
        ("id", model["id"]),
        ("name", f"{model['name']}:{model['version']}"),
        ("description", model["description"]),
        ("kind", "a folder (zip)" if model["kind"] == "zip" else "a file"),
        ("file", model["file_name"]),
        ("size", f"{size_text(model['size_bytes'])} ({model['size_bytes']:,} bytes)"),
        ("registered by", model["created_by"]),
        ("registered", when(model["created_at"])),
        ("page", model["url"]),
    ]


def show_model(model: Model, output: Output) -> None:
    show_fields(model, output, model_fields)


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="The model: NAME (its newest version), NAME:VERSION or id."
    )


def model_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="Only this model's versions.")


lists(
    "model",
    "list",
    "The workspace's registered models, every version, newest first.",
    model_list_options,
    lambda client, slug, args: [
        m for m in client.models(slug) if not args.name or m["name"] == args.name
    ],
    ["ID", "NAME", "VERSION", "KIND", "SIZE", "FILE", "BY", "REGISTERED"],
    model_row,
    "No models in {slug}.",
)
shows(
    "model",
    "show",
    "One model version: its file, size and who registered it.",
    model_argument,
    lambda client, slug, args: client.model(slug, args.model),
    show_model,
)


def model_register_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="The model's name (taken: its next version).")
    parser.add_argument(
        "file", metavar="FILE", type=Path, help="The model's file, or a .zip of its folder."
    )
    parser.add_argument("--description", default="", help="What it is, for the Models page.")


@command(
    "model",
    "register",
    "Upload a model's file (or a .zip of its folder) as NAME's first or next version.",
    model_register_options,
)
def model_register(args: argparse.Namespace) -> None:
    path: Path = args.file
    if path.is_dir():
        raise Failure(f"{path} is a folder: zip it first (a .zip is registered as a folder)", 2)
    if not path.is_file():
        raise Failure(f"{path}: no such file", 2)
    client, slug = connected(args)
    try:
        with uploading() as advance:
            made = client.register_model(slug, args.name, path, args.description, progress=advance)
    except OSError as error:
        raise Failure(f"{path}: {error.strerror or error}")
    show_model(made, output_of(args))
