"""Container images built here, without a registry or a base image to pull: a docker-archive tarball
(what `crane push` and `ctr images import` read) from files on this machine.

- busybox: Debian's static busybox with its applets linked in /bin (what `busybox:latest` provides);
- pause: the pod sandbox (tools/node/pause.c, built by tools/build-node.sh).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")


@dataclass(frozen=True)
class FileEntry:
    path: str  # inside the image, without a leading slash
    source: Path | None = None  # a file to copy, or
    data: bytes | None = None  # the file's content, or
    link: str | None = None  # a symlink target, or a directory when all three are None
    mode: int = 0o755


def _layer(entries: Iterable[FileEntry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mode, info.mtime = entry.mode, 0
            if entry.source is not None or entry.data is not None:
                data = entry.data if entry.data is not None else entry.source.read_bytes()  # type: ignore[union-attr]
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif entry.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            else:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
    return buffer.getvalue()


def write_image(
    out: Path, tag: str, entries: Iterable[FileEntry], *, entrypoint: list[str], user: str = ""
) -> Path:
    """A single-layer linux/amd64 image as a docker-archive tarball at `out`."""
    layer = _layer(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "User": user},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "zen-flow devkit (zen_flow_dev.node.images)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as archive:
        for name, data in (
            (config_name, config_bytes),
            ("layer.tar", layer),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    return out


def busybox_image(out: Path, tag: str = "busybox:latest") -> Path:
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install busybox-static (tools/build-node.sh does)")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries = [FileEntry(d) for d in ("bin", "tmp", "etc", "dev", "proc", "sys")]
    entries.append(FileEntry("bin/busybox", BUSYBOX))
    entries += [FileEntry(f"bin/{a}", link="busybox") for a in applets if a != "busybox"]
    passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    entries.append(FileEntry("etc/passwd", data=passwd, mode=0o644))
    return write_image(out, tag, entries, entrypoint=["/bin/sh"])


def pause_image(out: Path, pause_binary: Path, tag: str = "registry.k8s.io/pause:3.10") -> Path:
    return write_image(
        out, tag, [FileEntry("pause", pause_binary)], entrypoint=["/pause"], user="65535:65535"
    )
