"""Artifact archives: what one step packs, the next step unpacks to the same file or directory; archives
that would write outside their destination are refused."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api.transfer import ARCHIVES, Archive
from zen_flow.transfer.archive import TransferError, default_archive, pack, unpack


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {"": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("archive", [a for a in ARCHIVES if a != "none"])
def test_a_directory_comes_back_the_same_under_the_consumers_path(tmp_path: Path, archive: Archive) -> None:
    source = tree(tmp_path / "site", {"index.html": b"<h1>hi</h1>", "css/a.css": b"a{}", "empty.txt": b""})
    (source / "bin").mkdir()
    (source / "bin" / "run").write_bytes(b"#!/bin/sh\n")
    (source / "bin" / "run").chmod(0o755)
    stored = pack(source, archive, tmp_path)
    dest = tmp_path / "consumer" / "public"
    unpack(stored, archive, dest)
    assert snapshot(dest) == snapshot(source)
    assert (dest / "bin" / "run").stat().st_mode & 0o111


@pytest.mark.parametrize("archive", ARCHIVES)
def test_a_file_comes_back_as_a_file(tmp_path: Path, archive: Archive) -> None:
    source = tree(tmp_path / "out", {"app.txt": b"app 1.4.2\n"}) / "app.txt"
    stored = pack(source, archive, tmp_path / "out")
    dest = tmp_path / "in" / "renamed.txt"
    unpack(stored, archive, dest)
    assert dest.read_bytes() == b"app 1.4.2\n"


def test_defaults_store_files_as_they_are_and_directories_as_tar_gzip(tmp_path: Path) -> None:
    file = tree(tmp_path, {"f": b"x"}) / "f"
    assert default_archive(file) == "none"
    assert pack(file, "none", tmp_path) == file
    assert default_archive(tmp_path) == "tar+gzip"
    with pytest.raises(TransferError, match="is a directory: set archive"):
        pack(tmp_path, "none", tmp_path)


def test_zip_refuses_symlinks_and_tar_keeps_them(tmp_path: Path) -> None:
    source = tree(tmp_path / "d", {"real": b"1"})
    (source / "link").symlink_to("real")
    with pytest.raises(TransferError, match="symlink, which zip cannot store"):
        pack(source, "zip", tmp_path)
    unpack(pack(source, "tar", tmp_path), "tar", tmp_path / "copy")
    assert (tmp_path / "copy" / "link").is_symlink()


def _tar_with(name: str, *, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        _tar_with("../escape"),
        _tar_with("top/link", link="/etc/passwd"),
        _tar_with("top/link", link="../../../escape"),
    ],
    ids=["dotdot", "link-absolute", "link-dotdot"],
)
def test_a_tar_that_writes_outside_its_destination_is_refused(tmp_path: Path, content: bytes) -> None:
    stored = tmp_path / "evil.tar"
    stored.write_bytes(content)
    with pytest.raises(TransferError, match="refused archive entry"):
        unpack(stored, "tar", tmp_path / "dest" / "x")
    assert not (tmp_path / "escape").exists()


def _tar_of(*entries: tuple[str, bytes, str | None]) -> bytes:
    """(name, type, link) entries, a file's content being one byte."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, link in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if link is not None:
                info.linkname = link
            if kind == tarfile.REGTYPE:
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
            else:
                tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        # a link through another link of the archive: harmless to a lexical check, not on disk
        ([("s", tarfile.SYMTYPE, "."), ("l", tarfile.SYMTYPE, "s/../escape")], "through another link"),
        ([("d", tarfile.SYMTYPE, "sub"), ("d/file", tarfile.REGTYPE, None)], "under a symbolic link"),
        ([("h", tarfile.LNKTYPE, "../x")], "not a file of the archive"),
        ([("h", tarfile.LNKTYPE, "nothing-here")], "not a file of the archive"),
        ([("dev", tarfile.CHRTYPE, None)], "not a file, a directory or a link"),
    ],
    ids=["link-through-link", "under-link", "hardlink-out", "hardlink-unknown", "device"],
)
def test_a_tar_is_checked_by_its_names_before_anything_is_written(
    tmp_path: Path, entries: list[tuple[str, bytes, str | None]], why: str
) -> None:
    # Independent of tarfile's "data" filter, which a deep symlink chain gets past before Python 3.11.13.
    stored = tmp_path / "evil.tar"
    stored.write_bytes(_tar_of(*entries))
    with pytest.raises(TransferError, match=why):
        unpack(stored, "tar", tmp_path / "dest" / "x")
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


@pytest.mark.parametrize("archive", ["tar+gzip", "zip+deflate"])
def test_an_archive_that_would_fill_the_disk_is_refused_before_writing(
    tmp_path: Path, archive: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 MB of zeros compress to a few KB; on a disk with 5 MB to spare it must not be written at all.
    source = tree(tmp_path / "d", {"zeros": bytes(10_000_000)})
    stored = pack(source, archive, tmp_path)  # type: ignore[arg-type]
    assert stored.stat().st_size < 100_000
    disk = shutil.disk_usage(tmp_path)
    spare = disk.total // 10 + 5_000_000  # what the 10 % kept free leaves: 5 MB
    monkeypatch.setattr(shutil, "disk_usage", lambda _: disk._replace(free=spare))
    with pytest.raises(
        TransferError, match=r"holds 10000000 bytes, more than the 5000000 its disk can spare"
    ):
        unpack(stored, archive, tmp_path / "dest")  # type: ignore[arg-type]
    assert not (tmp_path / "dest").exists()


def test_hard_links_and_links_inside_the_archive_are_kept(tmp_path: Path) -> None:
    source = tree(tmp_path / "d", {"real": b"1", "sub/deep": b"2"})
    os.link(source / "real", source / "again")
    (source / "sub" / "up").symlink_to("../real")
    unpack(pack(source, "tar", tmp_path), "tar", tmp_path / "copy")
    copy = tmp_path / "copy"
    assert (copy / "again").read_bytes() == b"1"
    assert (copy / "sub" / "up").is_symlink()
    assert (copy / "sub" / "up").read_bytes() == b"1"


def test_an_absolute_tar_entry_lands_inside_the_destination(tmp_path: Path) -> None:
    stored = tmp_path / "abs.tar"
    stored.write_bytes(_tar_with(str(tmp_path / "escape")))
    unpack(stored, "tar", tmp_path / "dest")
    assert not (tmp_path / "escape").exists()
    assert [p.name for p in (tmp_path / "dest").rglob("escape")] == ["escape"]


@pytest.mark.parametrize("name", ["../escape", "/abs/evil", "a/../../escape"])
def test_a_zip_that_writes_outside_its_destination_is_refused(tmp_path: Path, name: str) -> None:
    stored = tmp_path / "evil.zip"
    with zipfile.ZipFile(stored, "w") as zf:
        zf.writestr(name, b"x")
    with pytest.raises(TransferError, match="outside the destination"):
        unpack(stored, "zip", tmp_path / "dest" / "x")


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    stored = tmp_path / "junk"
    stored.write_bytes(b"not an archive at all")
    for archive in ("tar+gzip", "zip"):
        with pytest.raises(TransferError, match="not a readable"):
            unpack(stored, archive, tmp_path / f"dest-{archive}")


def test_an_archive_made_elsewhere_with_several_entries_becomes_a_directory(tmp_path: Path) -> None:
    stored = tmp_path / "many.zip"
    with zipfile.ZipFile(stored, "w") as zf:
        zf.writestr("a.txt", b"a")
        zf.writestr("b/c.txt", b"c")
    unpack(stored, "zip", tmp_path / "dest")
    assert snapshot(tmp_path / "dest") == {"a.txt": b"a", "b/c.txt": b"c"}


names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,11}", fullmatch=True).filter(lambda n: n not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.lists(names, min_size=1, max_size=3).map("/".join), st.binary(max_size=300), max_size=6
    ),
    archive=st.sampled_from([a for a in ARCHIVES if a != "none"]),
)
def test_round_trip_of_any_tree(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], archive: Archive
) -> None:
    root = tmp_path_factory.mktemp("rt")
    source = root / "src"
    source.mkdir()
    written = {}
    for name, data in files.items():
        path = source / name
        if any(p.is_file() for p in [*path.parents][: len(Path(name).parts) - 1]) or path.is_dir():
            continue  # a name that is both a file and a directory: not a tree
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[name] = data
    unpack(pack(source, archive, root), archive, root / "dest")
    assert snapshot(root / "dest") == snapshot(source)
