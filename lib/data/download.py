"""Fetch a data file once, check its sha256, and only then put it in place.

Upstream files are pinned to a commit and a sha256. ``STUDY_DATA_MIRROR`` (a base URL)
replaces the upstream address with ``{mirror}/{relative path}``: tests point it at a
server on 127.0.0.1 or a ``file://`` folder, since the study machines have no internet.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DataFileError(RuntimeError):
    """A data file is missing, unreachable or not the pinned file."""
    exit_status = 2  # bad input: see lib.entrypoint


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_url_allowed(url: str) -> None:
    """Only https, file:// and plain http to this machine (test servers) are fetched."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("https", "file"):
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise DataFileError(f"refusing to download {url}: only https:// (or file:// and http://127.0.0.1 for tests) is allowed")


def resolve_url(relpath: str, upstream_url: str) -> str:
    mirror = os.environ.get("STUDY_DATA_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + urllib.parse.quote(relpath)
    return upstream_url


def _put_in_place(tmp: Path, dest: Path) -> None:
    """Create ``dest`` from the verified download; never replace a file already there (another
    process may have fetched the same pinned file meanwhile: ensure_file checks it)."""
    try:
        os.link(tmp, dest)  # fails, instead of replacing, when dest exists
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not os.path.lexists(dest):
            os.replace(tmp, dest)


def fetch(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically; a sha256 mismatch leaves nothing behind."""
    check_url_allowed(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise DataFileError(
                f"downloaded {url} but its sha256 is {h.hexdigest()}, expected {sha256}; the file was discarded"
            )
        _put_in_place(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DataFileError(f"could not download {url} to {dest}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure_file(data_root: Path, relpath: str, upstream_url: str, sha256: str, download: bool = True) -> Path:
    """Return the verified local path of a pinned data file, downloading it if missing."""
    path = data_root / relpath
    if not path.exists():
        if not download:
            raise DataFileError(
                f"data file {relpath} not found in {data_root} (set STUDY_DATA_DIR to the folder that holds it)"
            )
        url = resolve_url(relpath, upstream_url)
        try:
            fetch(url, path, sha256)
        except DataFileError as e:
            raise DataFileError(
                f"data file {relpath} not found in {data_root} and the download failed: {e}. "
                f"Set STUDY_DATA_DIR to a folder that holds it, or download {upstream_url} there."
            ) from None
    actual = sha256_of(path)
    if actual != sha256:
        raise DataFileError(
            f"{path} has sha256 {actual}, expected {sha256}: it is not the pinned file; "
            "delete it to download it again, or restore the original"
        )
    return path
