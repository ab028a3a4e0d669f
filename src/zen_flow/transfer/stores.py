"""Where artifacts live: S3-compatible storage (through the `minio` client: signing, multipart uploads,
retries) and plain HTTP(S) downloads. Runs in the step's pod only; the controller never imports it.

Credentials come from environment variables the kubelet filled from the flow's Secrets; they are
handed to the client and never printed: errors name the endpoint, bucket and key, not the keys.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from http.client import HTTPMessage, InvalidURL
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from zen_flow.api.transfer import HttpLocation, S3Location
from zen_flow.core.urls import has_userinfo, scrubbed, without_userinfo
from zen_flow.transfer.archive import TransferError

if TYPE_CHECKING:
    from minio import Minio

CHUNK = 1 << 20
HTTP_TIMEOUT = 60.0  # seconds without progress on one read, not for the whole download
USER_AGENT = "zen-flow-artifact"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _env(name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise TransferError(f"the credential variable {name} is empty: check the Secret the flow names")
    return value


def s3_client(location: S3Location) -> Minio:
    from minio import Minio
    from minio.credentials.providers import ChainedProvider, EnvAWSProvider, EnvMinioProvider, IamAwsProvider

    parts = urlsplit(location.endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TransferError(f"endpoint {shown_url(location.endpoint)!r} is not http(s)://host[:port]")
    access, secret = _env(location.access_key_env), _env(location.secret_key_env)
    # Without Secrets: the usual chain (AWS_* or MINIO_* variables, then the instance or pod role).
    chain = None if access else ChainedProvider([EnvAWSProvider(), EnvMinioProvider(), IamAwsProvider()])
    return Minio(
        parts.netloc,
        access_key=access,
        secret_key=secret,
        secure=parts.scheme == "https",
        region=location.region,
        credentials=chain,
        cert_check=not location.insecure,
    )


def _s3_problem(location: S3Location, err: Exception) -> TransferError:
    from minio.error import S3Error

    where = f"{location.url} at {shown_url(location.endpoint)}"
    if isinstance(err, S3Error):
        return TransferError(f"{where}: {err.code}: {err.message}")
    return TransferError(f"{where}: {type(err).__name__}: {err}")


def put_s3(location: S3Location, file: Path) -> None:
    try:
        s3_client(location).fput_object(location.bucket, location.key, str(file))
    except TransferError:
        raise
    except Exception as err:  # the client raises S3Error, urllib3 and OS errors: all mean "not stored"
        raise _s3_problem(location, err) from None


def get_s3(location: S3Location, file: Path) -> None:
    try:
        s3_client(location).fget_object(location.bucket, location.key, str(file))
    except TransferError:
        raise
    except Exception as err:
        raise _s3_problem(location, err) from None


class _OwnOriginHeaders(urllib.request.HTTPRedirectHandler):
    """Redirects are followed, but the flow's headers (an API key, a bearer token) only to the origin
    (scheme, host, port) they were written for: urllib copies every header to wherever one points.

    Only to http(s) URLs without userinfo: urllib would follow `ftp://` too (logging in with the
    URL's user), and quotes a Location it refuses, userinfo and all, in its error, as http.client
    does a password it reads as a port (`nonnumeric port: 'password@host'`). A redirect to one is
    refused here, before urllib reads it, saying where it pointed without the userinfo."""

    def __init__(self, private: Iterable[str]) -> None:
        self._private = [name.capitalize() for name in private]  # how urllib stores header names

    def http_error_302(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage
    ) -> IO[bytes] | None:
        location = headers.get("location") or headers.get("uri")
        if location:
            target = urljoin(req.full_url, location)
            whence = f"{shown_url(req.full_url)} redirected ({code}) to {shown_url(target)}"
            if has_userinfo(target):
                raise TransferError(
                    f"{whence}, a URL with a user name or password, which the downloader never sends"
                )
            if urlsplit(target).scheme not in ("http", "https"):
                raise TransferError(f"{whence}: only http and https redirects are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    # The base class binds these to its own http_error_302, not to this one.
    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in self._private:
                new.remove_header(name)
        return new


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def shown_url(url: str) -> str:
    """`url` as messages and logs show it: without userinfo (a password) nor query and fragment (a
    token may be there)."""
    return without_userinfo(url).split("#", 1)[0].split("?", 1)[0]


def get_http(location: HttpLocation, file: Path) -> None:
    where = shown_url(location.url)
    if has_userinfo(location.url):  # a flow stored before admission refused it (validation/io.py)
        raise TransferError(
            f"{where}: the URL holds a user name or password, which the downloader never sends: give the "
            "credential as a header from a Secret (http.headersFrom)"
        )
    parts = urlsplit(location.url)
    if parts.scheme not in ("http", "https"):
        raise TransferError(f"{where}: only http and https URLs can be downloaded")
    secret = {}
    for header, variable in location.header_env.items():
        value = os.environ.get(variable)
        if value is None:  # the kubelet sets it from the Secret, or the pod does not start
            raise TransferError(f"{header}: no value in {variable} (http.headersFrom)")
        secret[header] = value
    headers = {"User-Agent": USER_AGENT, **location.headers, **secret}
    request = urllib.request.Request(location.url, headers=headers)
    opener = urllib.request.build_opener(_OwnOriginHeaders([*location.headers, *secret]))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response, file.open("wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    except urllib.error.HTTPError as err:
        raise TransferError(scrubbed(f"{where}: HTTP {err.code} {err.reason}")) from None
    except (urllib.error.URLError, OSError) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise TransferError(scrubbed(f"{where}: {reason}")) from None
    except InvalidURL:  # its text quotes the URL's pieces (a password read as a port): not shown
        raise TransferError(f"{where}: an invalid URL (this one, or one a redirect named)") from None
