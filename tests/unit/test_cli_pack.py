"""hangar/pack.py: what a code folder packs to. Git's ignore rules (.gitignore, then
.hangarignore, also in subfolders), .git always left out, symbolic links never followed,
and a folder over the size limit refused with a message that says what to do."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from hangar.pack import PackError, pack, parse_rules, select
from hangar.pack import ignored as is_ignored


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def packed_names(root: Path, **kwargs) -> list[str]:
    return select(root, **kwargs).names


def test_gitignore_patterns_negation_comments_and_blank_lines(tmp_path):
    tree(
        tmp_path,
        {
            ".gitignore": ("# caches\n*.pyc\n\ndata/\n/build\n*.txt\n!keep.txt\n   \n#notes.md\n"),
            "train.py": "print(1)\n",
            "train.pyc": b"\x00",
            "pkg/mod.py": "",
            "pkg/mod.pyc": b"\x00",
            "pkg/deep/er/x.pyc": b"\x00",
            "data/big.bin": b"0" * 10,
            "pkg/data/nested.csv": "a,b\n",
            "build/out.o": b"\x00",
            "pkg/build/kept.py": "",  # `/build` is anchored to the root
            "notes.txt": "",
            "keep.txt": "",
            "pkg/keep.txt": "",
            "#notes.md": "",  # a comment, not a pattern
        },
    )
    assert packed_names(tmp_path) == [
        "#notes.md",
        ".gitignore",
        "keep.txt",
        "pkg/build/kept.py",
        "pkg/keep.txt",
        "pkg/mod.py",
        "train.py",
    ]


def test_a_file_pattern_also_matches_a_folder_and_a_folder_pattern_never_a_file(tmp_path):
    tree(
        tmp_path,
        {
            ".gitignore": "logs\ncache/\n",
            "logs/today.log": "",
            "src/logs": "a file named logs\n",
            "cache": "a file named cache, kept\n",
            "src/cache/blob": "",
        },
    )
    assert packed_names(tmp_path) == [".gitignore", "cache"]


def test_hangarignore_adds_rules_and_can_take_back_what_git_ignores(tmp_path):
    tree(
        tmp_path,
        {
            ".gitignore": "*.ckpt\nweights/\n",
            ".hangarignore": "# not for the job\nnotebooks/\n!best.ckpt\n",
            "train.py": "",
            "last.ckpt": "",
            "best.ckpt": "",
            "notebooks/explore.ipynb": "{}",
            "weights/w.bin": "",
        },
    )
    assert packed_names(tmp_path) == [".gitignore", ".hangarignore", "best.ckpt", "train.py"]


def test_ignore_files_in_subfolders_apply_below_them_only(tmp_path):
    tree(
        tmp_path,
        {
            "src/.gitignore": "*.tmp\n/generated\n!src-only.keep\n",
            "src/a.tmp": "",
            "src/deeper/b.tmp": "",
            "src/generated/x.py": "",
            "src/deeper/generated/y.py": "",  # "/generated" is anchored to src/
            "top.tmp": "",  # outside src/: not ignored
        },
    )
    assert packed_names(tmp_path) == [
        "src/.gitignore",
        "src/deeper/generated/y.py",
        "top.tmp",
    ]


def test_a_file_inside_an_ignored_folder_cannot_be_taken_back(tmp_path):
    # As in git: the folder is never entered, so `!data/keep.csv` changes nothing...
    tree(tmp_path, {".gitignore": "data/\n!data/keep.csv\n", "data/keep.csv": "", "a.py": ""})
    assert packed_names(tmp_path) == [".gitignore", "a.py"]
    # ...but ignoring the folder's contents rather than the folder lets a file back in.
    tree(tmp_path, {".gitignore": "data/*\n!data/keep.csv\n", "data/other.csv": ""})
    assert packed_names(tmp_path) == [".gitignore", "a.py", "data/keep.csv"]


def test_double_star_question_mark_and_character_classes():
    rules = parse_rules("**/tmp\nlogs/**\na/**/z.py\nrun?.log\n[0-9]*.csv\n\\!bang\n")

    def ignored(path: str, is_dir: bool = False) -> bool:
        return is_ignored(rules, path, is_dir)

    assert ignored("tmp", True) and ignored("x/y/tmp", True)
    assert ignored("logs/a/b.txt") and not ignored("logs", True)
    assert ignored("a/z.py") and ignored("a/b/c/z.py") and not ignored("b/a/z.py")
    assert ignored("run1.log") and ignored("deep/runx.log") and not ignored("run10.log")
    assert ignored("2024.csv") and not ignored("data.csv")
    assert ignored("!bang")


def test_git_is_always_left_out_even_when_a_rule_takes_it_back(tmp_path):
    tree(
        tmp_path,
        {
            ".gitignore": "!.git\n!.git/\n",
            ".git/HEAD": "ref: refs/heads/main\n",
            ".git/objects/ab/cdef": b"\x00",
            "vendored/lib/.git": "gitdir: ../../.git/modules/lib\n",  # a submodule's file
            "vendored/lib/lib.py": "",
            "main.py": "",
        },
    )
    assert packed_names(tmp_path) == [".gitignore", "main.py", "vendored/lib/lib.py"]


def test_symbolic_links_are_not_followed_nor_packed(tmp_path):
    outside = tmp_path / "outside"
    tree(outside, {"secret.key": "do not upload", "dir/also-secret": "no"})
    code = tree(tmp_path / "code", {"main.py": "print(1)\n"})
    os.symlink(outside / "secret.key", code / "key-link")
    os.symlink(outside / "dir", code / "dir-link")
    os.symlink(code / "main.py", code / "inside-link.py")
    os.symlink(tmp_path / "nowhere", code / "dangling")
    os.symlink(code, code / "loop")  # would recurse forever if followed

    chosen = select(code)
    assert chosen.names == ["main.py"]
    assert sorted(chosen.links) == ["dangling", "dir-link", "inside-link.py", "key-link", "loop"]
    with pack(code) as packed, zipfile.ZipFile(packed.file) as archive:
        assert archive.namelist() == ["main.py"]
        assert archive.read("main.py") == b"print(1)\n"
    assert (packed.count, packed.name, packed.links) == (1, "code.zip", chosen.links)


def test_the_zip_holds_the_kept_files_at_its_root_with_their_content(tmp_path):
    code = tree(
        tmp_path / "project",
        {
            ".gitignore": "secret.txt\n",
            "secret.txt": "never uploaded",
            "train.sh": "echo hi\n",
            "pkg/util.py": "X = 1\n",
        },
    )
    (code / "train.sh").chmod(0o755)
    with pack(code) as packed, zipfile.ZipFile(packed.file) as archive:
        assert sorted(archive.namelist()) == [".gitignore", "pkg/util.py", "train.sh"]
        assert archive.read("pkg/util.py") == b"X = 1\n"
        mode = archive.getinfo("train.sh").external_attr >> 16
        assert mode & 0o111  # executables stay executable
        assert packed.name == "project.zip" and packed.count == 3
        assert packed.zip_size > 0


def test_a_folder_over_the_limit_is_refused_saying_what_to_do(tmp_path):
    code = tree(
        tmp_path / "big",
        {".gitignore": "data/\n", "data/huge.bin": b"0" * 4096, "model.bin": b"0" * 3000},
    )
    assert select(code, limit=3500).size == 3000 + len("data/\n")
    with pytest.raises(PackError) as refused:
        pack(code, limit=2048)
    message = str(refused.value)
    assert "\n" not in message
    assert str(code) in message and "limit" in message and ".hangarignore" in message
    # What the rules leave out does not count: the 4 KiB in data/ is ignored.
    with pack(code, limit=3500) as packed:
        assert packed.size < 3500


def test_the_default_limit_is_100_mib(tmp_path):
    code = tree(tmp_path / "c", {"a": ""})
    big = code / "sparse.bin"
    with open(big, "wb") as file:  # sparse: 101 MiB of size, no disk used
        file.truncate(101 * 1024 * 1024)
    with pytest.raises(PackError, match="more than 100 MiB"):
        select(code)
    big.unlink()
    assert select(code).names == ["a"]


def test_not_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(PackError, match=r"cannot read the code folder .*no such file"):
        select(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(PackError, match="is not a folder"):
        select(tmp_path / "file")
