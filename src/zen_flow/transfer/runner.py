"""`zen-flow artifact download|upload`: the two transfer containers zen-flow adds to a step's pod.

download  an init container: fetches every input artifact into the shared volume, checks its digest,
          unpacks it; any failure exits 1 with the reason in the termination message (the pod fails,
          and the step's message says which artifact and why).
upload    a native sidecar (an init container with restartPolicy Always): idles until the kubelet
          stops it, which happens once the step's containers have exited, then packs and stores every
          output artifact and writes an `UploadReport` to its termination message. It exits 0 either
          way: a sidecar's exit code does not decide the pod's phase, the report does (the controller
          reads it and fails the step on an error or a missing non-optional artifact).
The upload must finish within the pod's terminationGracePeriodSeconds (30 s unless the template sets
more); a report that never got written fails the step too.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from zen_flow.api.transfer import Download, Stored, TransferPlan, Upload, UploadReport
from zen_flow.core.urls import scrubbed
from zen_flow.transfer.archive import TransferError, default_archive, pack, unpack
from zen_flow.transfer.stores import get_http, get_s3, put_s3, sha256_of, shown_url

MESSAGE_LIMIT = 4096  # bytes the kubelet keeps of a termination message
TERMINATION_LOG = Path("/dev/termination-log")


def download(item: Download, log: TextIO) -> None:
    dest = Path(item.dest)
    if dest.exists() or dest.is_symlink():
        raise TransferError(f"{dest} exists already")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as scratch:
        stored = Path(scratch) / "object"
        if item.s3 is not None:
            get_s3(item.s3, stored)
            where = item.s3.url
        elif item.http is not None:
            get_http(item.http, stored)
            where = shown_url(item.http.url)
        else:
            raise TransferError("no source (s3 or http) in the plan")
        digest = sha256_of(stored)
        if item.digest is not None and digest != item.digest:
            raise TransferError(f"{where} changed since it was stored: {digest}, expected {item.digest}")
        unpack(stored, item.archive, dest)
    _share(dest)
    log.write(f"input artifact {item.name}: {where} -> {dest} ({digest})\n")


def _share(root: Path) -> None:
    """Readable and writable by the step's containers whatever user they run as (the downloader runs
    as the pod's or the image's user, the step's containers may not): the volume is the pod's own."""
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        if path.is_symlink():
            continue
        extra = 0o777 if path.is_dir() else 0o666
        path.chmod(path.stat().st_mode | extra)


def upload(item: Upload, workdir: Path, log: TextIO) -> Stored | None:
    """The stored artifact, or None when an optional one does not exist."""
    source = Path(item.source)
    if not source.exists():
        shown = item.path or item.source
        if item.optional:
            log.write(f"output artifact {item.name}: {shown} does not exist (optional)\n")
            return None
        raise TransferError(f"{shown} does not exist: the step did not write it")
    archive = item.archive or default_archive(source)
    file = pack(source, archive, workdir)
    size, digest = file.stat().st_size, sha256_of(file)
    put_s3(item.s3, file)
    log.write(f"output artifact {item.name}: {source} -> {item.s3.url} ({size} bytes, {digest})\n")
    return Stored(size=size, digest=digest, archive=archive)


def upload_all(plan: TransferPlan, workdir: Path, log: TextIO) -> UploadReport:
    stored: dict[str, Stored] = {}
    missing: list[str] = []
    errors: dict[str, str] = {}
    for item in plan.uploads:
        try:
            result = upload(item, workdir, log)
        except TransferError as err:
            errors[item.name] = str(err)
            log.write(f"output artifact {item.name}: {err}\n")
            continue
        except Exception as err:  # a bug of ours must still end up in the report
            errors[item.name] = f"{type(err).__name__}: {err}"
            continue
        if result is None:
            missing.append(item.name)
        else:
            stored[item.name] = result
    return UploadReport(stored=stored, missing=tuple(missing), errors=errors)


# What an error says when even its shortest form leaves no room: the reasons are in the uploader's log.
SEE_LOG = "see the uploader's log"


def report_text(report: UploadReport) -> str:
    """The report as JSON within MESSAGE_LIMIT bytes: error messages are shortened until it fits (the
    stored artifacts' sizes and digests are what the next steps need, so they are kept), at last to
    SEE_LOG each: an error then takes less than a stored artifact, for which admission leaves room
    (validation/outputs.py report_bound)."""
    text = report.model_dump_json(by_alias=True)
    budget = 400
    while len(text.encode()) > MESSAGE_LIMIT and budget >= 16:
        errors = {name: _shorten(message, budget) for name, message in report.errors.items()}
        text = report.model_copy(update={"errors": errors}).model_dump_json(by_alias=True)
        budget //= 2
    if len(text.encode()) > MESSAGE_LIMIT:  # escapes and wide characters: 25 of them may be 150 bytes
        errors = dict.fromkeys(report.errors, SEE_LOG)
        text = report.model_copy(update={"errors": errors}).model_dump_json(by_alias=True)
    return text


def _shorten(message: str, limit: int) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def run_download(plan: TransferPlan, message_file: Path, log: TextIO | None = None) -> int:
    log = log or sys.stderr  # read at call time: a default bound at import misses later redirections
    for item in plan.downloads:
        try:
            download(item, log)
        except Exception as err:
            reason = str(err) if isinstance(err, TransferError) else f"{type(err).__name__}: {err}"
            # A library's text may quote a URL with its userinfo: never into the log or the status.
            text = scrubbed(f"input artifact {item.name}: {reason}")
            log.write(text + "\n")
            message_file.write_text(_shorten(text, MESSAGE_LIMIT // 4))
            return 1
    return 0


def run_upload(
    plan: TransferPlan, message_file: Path, scratch: Path, ready_file: Path | None, log: TextIO | None = None
) -> int:
    """Wait for SIGTERM (or SIGINT), then store the outputs. Both signals are blocked before
    `ready_file` appears: the sidecar's startup probe waits for that file, and the kubelet starts the
    step's containers only then, so even a step that exits at once cannot stop the uploader before it
    listens (Python's default for SIGTERM would end it without a report)."""
    log = log or sys.stderr
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        ready_file.touch()
    log.write(f"waiting for the step's containers to exit; {len(plan.uploads)} output artifact(s) to store\n")
    signal.sigwait(stop)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="upload-") as workdir:
        report = upload_all(plan, Path(workdir), log)
    message_file.write_text(report_text(report))
    return 0
