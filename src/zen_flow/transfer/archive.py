"""Packing an artifact's path into the object that is stored, and unpacking it where a step reads it.

An archive holds one top-level entry, the path's last component (a file, or a directory with all it
contains), so the next step gets the same file or directory at its own path. Unpacking refuses what
could land outside the destination: absolute names, `..`, links that leave it, devices (tar's "data"
filter; the same rules for zip by hand). Symlinks are kept in tar and refused in zip (zip has none).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from zen_flow.api.transfer import Archive


class TransferError(Exception):
    """A transfer that cannot succeed; the message is for the step's status, so it says what to fix."""


def default_archive(source: Path) -> Archive:
    """A file is stored as it is, a directory as a gzipped tar."""
    return "tar+gzip" if source.is_dir() else "none"


def pack(source: Path, archive: Archive, workdir: Path) -> Path:
    """The file to store for `source` (itself when `archive` is "none", else a new archive in `workdir`)."""
    if archive == "none":
        if source.is_dir():
            raise TransferError(f"{source} is a directory: set archive (tar or zip) to store a directory")
        return source
    out = workdir / f"{source.name}.{archive.replace('+', '.')}"
    if archive in ("tar", "tar+gzip"):
        with tarfile.open(out, "w:gz" if archive == "tar+gzip" else "w") as tar:
            tar.add(source, arcname=source.name, filter=_anonymous)
        return out
    method = zipfile.ZIP_DEFLATED if archive == "zip+deflate" else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for path in [source, *sorted(source.rglob("*"))] if source.is_dir() else [source]:
            if path.is_symlink():
                raise TransferError(f"{path} is a symlink, which zip cannot store: use archive format tar")
            zf.write(path, arcname=str(path.relative_to(source.parent)))
    return out


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The producer's user and group names mean nothing in the next step's pod.
    return info.replace(uid=0, gid=0, uname="", gname="", deep=False)


def unpack(stored: Path, archive: Archive, dest: Path) -> None:
    """Put what `stored` holds at `dest` (which must not exist yet)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if archive == "none":
        shutil.move(stored, dest)
        return
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as scratch:
        root = Path(scratch)
        if archive in ("tar", "tar+gzip"):
            _untar(stored, root)
        else:
            _unzip(stored, root)
        entries = list(root.iterdir())
        # One top-level entry (what zen-flow stores): that entry is the artifact. Anything else (an
        # archive made elsewhere): the directory of its entries.
        if len(entries) == 1:
            entries[0].rename(dest)
        else:
            root.rename(dest)
            root.mkdir()  # for TemporaryDirectory's clean-up


# What unpacking leaves free of the disk the artifact goes to, at least: the kubelet starts evicting pods,
# other tenants' among them, when a node's filesystem falls under 10 % free (its default threshold).
KEEP_FREE = 0.10


def _fits(sizes: Iterable[int], root: Path) -> None:
    """Refuse an archive that would not fit before writing any of it: a few KB of gzip can hold a
    terabyte of zeros, which would fill the node's disk (the artifacts' emptyDir shares it)."""
    needed = sum(sizes)
    disk = shutil.disk_usage(root)
    room = disk.free - int(disk.total * KEEP_FREE)
    if needed > room:
        raise TransferError(
            f"the archive holds {needed} bytes, more than the {max(room, 0)} its disk can spare "
            f"(keeping {KEEP_FREE:.0%} free)"
        )


def _untar(stored: Path, root: Path) -> None:
    try:
        with tarfile.open(stored, "r:*") as tar:
            members = tar.getmembers()
            _refuse_escapes(members)
            _fits((m.size for m in members if m.isfile()), root)
            tar.extractall(root, filter="data")
    except tarfile.FilterError as err:
        raise TransferError(f"refused archive entry: {err}") from None
    except tarfile.TarError as err:
        raise TransferError(f"not a readable tar archive: {err}") from None


def _refuse_escapes(members: list[tarfile.TarInfo]) -> None:
    """What could write outside the destination, refused by its names alone, before anything is written:
    tarfile's "data" filter resolves paths on disk, and before Python 3.11.13 a symlink chain deep enough
    to pass PATH_MAX got past it (CVE-2025-4517). A name is taken as the filter takes it (leading slashes
    dropped). Refused: `..` in a name; a name under a symbolic link of the archive; a symbolic link whose
    target is absolute, climbs out, or goes through another link of the archive (not followed here); a
    hard link to anything but a regular file of the archive; devices and FIFOs."""

    def path(name: str) -> PurePosixPath:
        return PurePosixPath(posixpath.normpath(name.lstrip("/")))

    links = {path(m.name) for m in members if m.issym()}
    files = {path(m.name) for m in members if m.isfile()}
    for member in members:
        name = path(member.name)
        why = ""
        if ".." in PurePosixPath(member.name.lstrip("/")).parts or name.parts[:1] == ("..",):
            why = "outside the destination"
        elif any(parent in links for parent in name.parents if parent.parts):
            why = "under a symbolic link"
        elif member.issym() and not _stays_inside(name.parent, member.linkname, links):
            why = f"a link to {member.linkname!r}, outside the destination or through another link"
        elif member.islnk() and path(member.linkname) not in files:
            why = f"a hard link to {member.linkname!r}, not a file of the archive"
        elif not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            why = "not a file, a directory or a link"
        if why:
            raise TransferError(f"refused archive entry {member.name!r}: {why}")


def _stays_inside(base: PurePosixPath, target: str, links: set[PurePosixPath]) -> bool:
    if not target or PurePosixPath(target).is_absolute():
        return False
    parts = list(base.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part != ".":
            parts.append(part)
            if PurePosixPath(*parts) in links:
                return False
    return True


def _unzip(stored: Path, root: Path) -> None:
    try:
        with zipfile.ZipFile(stored) as zf:
            for info in zf.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise TransferError(f"refused archive entry {info.filename!r}: outside the destination")
            _fits((info.file_size for info in zf.infolist()), root)
            zf.extractall(root)
    except zipfile.BadZipFile as err:
        raise TransferError(f"not a readable zip archive: {err}") from None
    # zip keeps Unix modes in external_attr; extractall ignores them, so executables stay executable here.
    with zipfile.ZipFile(stored) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                os.chmod(root / info.filename, mode & 0o755)
