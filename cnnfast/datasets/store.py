"""Where dataset files are looked for, and how missing ones are downloaded.

Lookup order for a dataset ``<name>`` (the first directory holding every file wins):

1. the ``path=`` given to ``load_data`` (then nothing else is searched);
2. ``$CNNFAST_DATA/<name>/``;
3. the user cache, ``$XDG_CACHE_HOME/cnnfast/<name>/`` (default ``~/.cache/cnnfast/<name>/``);
4. the Debian dataset location ``/usr/share/datasets/<name>/`` (``dataset-fashion-mnist``);
5. a download from the official mirrors into the cache: each file is streamed to a temporary
   file beside its destination, its SHA-256 checked against the published value, and only then
   renamed into place (``os.replace``), so an interrupted or corrupt download never leaves a
   file that a later lookup would trust.

Files found locally are not checksummed (repackaged copies such as Debian's are recompressed);
their readers validate every size instead. ``CNNFAST_OFFLINE=1`` or ``download=False`` turns
step 5 off. Tests replace the network with ``set_fetcher``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Module-level so that tests can point them elsewhere.
DEBIAN_ROOT = Path("/usr/share/datasets")
ENV_DATA = "CNNFAST_DATA"
ENV_OFFLINE = "CNNFAST_OFFLINE"

Fetcher = Callable[[str], Iterable[bytes]]


class DatasetNotFoundError(FileNotFoundError):
    """No directory holds the dataset's files and they could not be downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    """A file published upstream: its cache name, SHA-256 and mirror URLs (tried in order)."""

    name: str
    sha256: str
    urls: tuple[str, ...]
    size: int | None = None


def _urllib_fetch(url: str, timeout: float = 60.0) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(1 << 20):
            yield chunk


_fetcher: Fetcher = _urllib_fetch


def set_fetcher(fetch: Fetcher | None) -> Fetcher:
    """Replace the download function (``url -> iterable of byte chunks``); None restores urllib.

    Returns the previous one. Used by tests to download without a network.
    """
    global _fetcher
    previous = _fetcher
    _fetcher = fetch or _urllib_fetch
    return previous


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/cnnfast``, or ``~/.cache/cnnfast``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnfast"


def search_dirs(name: str, aliases: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """The (label, directory) pairs searched for dataset ``name``, in order (``path=`` aside)."""
    dirs: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_DATA)
    if env:
        dirs.append((f"${ENV_DATA}/{name}", Path(env) / name))
    dirs.append(("user cache", cache_root() / name))
    for n in (name, *aliases):
        dirs.append(("Debian datasets", DEBIAN_ROOT / n))
    return dirs


def find_files(directory: Path, wanted: Sequence[Sequence[str]]) -> list[Path] | None:
    """For each required file (a list of acceptable names), its path in directory; None if any
    is missing."""
    found = []
    for names in wanted:
        hit = next((directory / n for n in names if (directory / n).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the published one."""


def download(remote: RemoteFile, directory: Path, quiet: bool = False) -> Path:
    """Download ``remote`` into ``directory`` atomically, verifying its SHA-256.

    Mirrors are tried in order. Returns the final path.

    Raises
    ------
    ChecksumError
        Some mirror answered but its bytes had the wrong checksum (and none had the right one).
    OSError
        No mirror could be reached.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.name
    failures: list[str] = []
    mismatch = False
    for url in remote.urls:
        if not quiet:
            print(f"Downloading data from {url}", file=sys.stderr, flush=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=directory)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _fetcher(url):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if digest.hexdigest() != remote.sha256:
                mismatch = True
                failures.append(
                    f"{url}: sha256 {digest.hexdigest()} ({size} bytes) does not match the "
                    f"published {remote.sha256}"
                )
                continue
            os.replace(tmp, target)
            return target
        except OSError as err:  # urllib.error.URLError is an OSError
            failures.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    detail = "\n  ".join(failures)
    if mismatch:
        raise ChecksumError(f"download of {remote.name} failed verification:\n  {detail}")
    raise OSError(f"download of {remote.name} failed:\n  {detail}")


def not_found(name: str, dirs: Sequence[tuple[str, Path]], wanted: Sequence[Sequence[str]],
              remotes: Sequence[RemoteFile], reason: str, note: str = "") -> DatasetNotFoundError:
    """The error raised when nothing is found: where we looked and where to put the files."""
    lines = [f"{name}: dataset files not found ({reason})."]
    lines.append("Searched, in order:")
    if not os.environ.get(ENV_DATA):
        lines.append(f"  ${ENV_DATA}/{name}  (${ENV_DATA} is not set)")
    lines += [f"  {d}  ({label})" for label, d in dirs]
    lines.append("Each directory must hold all of: " + ", ".join(
        names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "") for names in wanted))
    if note:
        lines.append(note)
    lines.append(f"Put them in {dirs[0][1]} (or pass load_data(path=DIR), or set ${ENV_DATA} to a "
                 f"directory containing {name}/). The official files:")
    for r in remotes:
        lines.append(f"  {r.name}  sha256 {r.sha256}  from {r.urls[0]}")
    return DatasetNotFoundError("\n".join(lines))


def locate(name: str, wanted: Sequence[Sequence[str]], path: str | os.PathLike | None,
           aliases: Sequence[str] = ()) -> tuple[list[Path] | None, list[tuple[str, Path]]]:
    """The required files from ``path`` or the search directories, and the directories searched.

    An explicit ``path`` that lacks a file raises FileNotFoundError naming it.
    """
    if path is not None:
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{name}: path={str(path)!r} is not a directory (cnnfast's path= names the "
                f"directory holding the dataset files, not a file name inside a cache as in Keras)"
            )
        found = find_files(directory, wanted)
        if found is None:
            missing = [names[0] for names in wanted
                       if not any((directory / n).is_file() for n in names)]
            raise FileNotFoundError(f"{name}: {directory} lacks {', '.join(missing)}")
        return found, [("path", directory)]
    dirs = search_dirs(name, aliases)
    for _, directory in dirs:
        found = find_files(directory, wanted)
        if found is not None:
            return found, dirs
    return None, dirs
