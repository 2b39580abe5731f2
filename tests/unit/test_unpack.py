"""hangar/unpack.py: a zip from the server (a job's output files) written into a folder of
the user's, its names read as hostile. A zip naming `..`, an absolute path or a link is
refused whole; a link already in the folder is in the way, never a way out."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from hangar.unpack import Folder, UnpackError, extract_zip, parts_of


def zip_of(*entries: tuple[str, bytes] | zipfile.ZipInfo) -> io.BytesIO:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, b"/etc/passwd")
            else:
                archive.writestr(*entry)
    data.seek(0)
    return data


def link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_plain_names_are_written_whole_with_their_folders(tmp_path):
    got = extract_zip(
        zip_of(("model/weights.bin", b"w" * 10), ("metrics.json", b"{}"), ("deep/a/b/c.txt", b"")),
        Folder(tmp_path / "out"),
    )
    assert got == [("deep/a/b/c.txt", 0), ("metrics.json", 2), ("model/weights.bin", 10)]
    assert (tmp_path / "out" / "model" / "weights.bin").read_bytes() == b"w" * 10
    assert everything_in(tmp_path / "out") == [
        "deep", "deep/a", "deep/a/b", "deep/a/b/c.txt", "metrics.json", "model",
        "model/weights.bin",
    ]  # fmt: skip
    # Again: the files are replaced, nothing is left beside them.
    extract_zip(zip_of(("metrics.json", b"{1}")), Folder(tmp_path / "out"))
    assert (tmp_path / "out" / "metrics.json").read_bytes() == b"{1}"
    assert not [p for p in everything_in(tmp_path / "out") if ".part-" in p]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (("../evil.txt", b"x"), "not a plain path"),
        (("a/../../evil.txt", b"x"), "not a plain path"),
        (("/hangar-evil.txt", b"x"), "not a relative path"),
        (("..\\evil.txt", b"x"), "not a relative path"),
        (("a//b.txt", b"x"), "not a plain path"),
        (("./a.txt", b"x"), "not a plain path"),
        (("evil\n.txt", b"x"), "control characters"),
        (("evil\u202etxt.exe", b"x"), "control characters"),
        (link("passwd"), "not a regular file"),
    ],
)
def test_a_zip_with_one_name_that_leaves_the_folder_or_a_link_is_refused_whole(
    tmp_path, entry, why
):
    target = tmp_path / "a" / "out"
    target.mkdir(parents=True)
    with pytest.raises(UnpackError, match=why):
        extract_zip(zip_of(("first.txt", b"1"), entry), Folder(target))
    assert everything_in(tmp_path) == ["a", "a/out"]  # not even first.txt
    assert not Path("/hangar-evil.txt").exists()


def test_a_name_twice_is_refused(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("a.txt", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("a.txt", b"2")
    data.seek(0)
    with pytest.raises(UnpackError, match="in the zip twice"):
        extract_zip(data, Folder(tmp_path))
    assert everything_in(tmp_path) == []


def test_a_link_already_in_the_folder_is_in_the_way_not_followed(tmp_path):
    elsewhere, target = tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    target.mkdir()
    (target / "model").symlink_to(elsewhere)
    with pytest.raises(UnpackError, match="model is in the way: not a folder"):
        extract_zip(zip_of(("model/weights.bin", b"w")), Folder(target))
    assert everything_in(elsewhere) == []
    # A link where a file goes is replaced by the file, never written through.
    (elsewhere / "secret").write_text("mine")
    (target / "metrics.json").symlink_to(elsewhere / "secret")
    extract_zip(zip_of(("metrics.json", b"{}")), Folder(target))
    assert (elsewhere / "secret").read_text() == "mine"
    assert not (target / "metrics.json").is_symlink()
    assert (target / "metrics.json").read_bytes() == b"{}"


def test_not_a_zip_is_one_clear_error(tmp_path):
    with pytest.raises(UnpackError, match="the server's zip is unreadable"):
        extract_zip(io.BytesIO(b"<html>not a zip</html>"), Folder(tmp_path))


def test_parts_of_plain_names():
    assert parts_of("rank-1/model/w.bin") == ("rank-1", "model", "w.bin")
    assert parts_of("…é 中.txt") == ("…é 中.txt",)
