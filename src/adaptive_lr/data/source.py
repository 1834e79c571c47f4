"""Where a dataset's files come from and where its decoded tensors are cached.

Every real-data DataModule resolves its files the same way:
  1. the data directory (`data_dir` argument / config key, else `$ADAPTIVE_LR_DATA_DIR`), which may be read-only
     and laid out like `../shared/datasets` (`<data_dir>/<dataset>/<files>`);
  2. the download path its library offers (torchvision, Hugging Face), into the writable cache;
  3. else `DataNotFoundError`: one message naming the dataset, every folder searched and the files expected.
A file that is found but cannot be used (damaged, wrong format, bad values) raises `DataError` naming it.

`locate` is that order, given where a dataset's files may lie and how its library downloads them.

Decoded tensors are written once to the cache folder (`cache_dir` argument, else `$ADAPTIVE_LR_CACHE_DIR`, else
`$ADAPTIVE_LR_HOME/.cache/adaptive-lr`, else `./.cache/adaptive-lr`), never into the data directory, as
`<cache>/<dataset>/<name>-<key>.pt` (`cache_path`, `decoded`) under a key that includes the settings they depend on
and the source files' sizes and mtimes, so a changed source is decoded again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from adaptive_lr.errors import UserError
from adaptive_lr.runtime import default_cache_dir

ENV_DATA_DIR = "ADAPTIVE_LR_DATA_DIR"
PathLike = str | os.PathLike[str] | None
T = TypeVar("T")


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset is neither in the data directory nor downloadable; the message says what to put where."""


class DataError(UserError, ValueError):
    """A data file exists but cannot be used (truncated, wrong format, missing or misordered values, too short
    for the configured splits); the message names the file and what was expected."""


#: what reading a damaged file raises: truncated or non-gzip `.gz` (EOFError, gzip.BadGzipFile), a broken tar,
#: pickle or encoding; loaders turn these into a `DataError` naming the file
DECODE_ERRORS = (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, UnicodeDecodeError)


def data_root(data_dir: PathLike = None) -> Path | None:
    """The configured local data directory, or None."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(ENV_DATA_DIR) or None
    return Path(value).expanduser() if value is not None else None


def cache_root(cache_dir: PathLike = None) -> Path:
    """The writable cache folder for decoded tensors and downloads (created on first use)."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


def candidate_dirs(dataset: str, data_dir: PathLike, *names: str) -> list[Path]:
    """Folders that may hold `dataset`: `<root>/<name>` for each name (default: the dataset's name), then `<root>`."""
    root = data_root(data_dir)
    if root is None:
        return []
    return [root / n for n in (names or (dataset,))] + [root]


def find_dir(dataset: str, candidates: Iterable[Path], expected: Sequence[str]) -> Path | None:
    """The first candidate folder holding every one of `expected` (relative paths), or None."""
    for folder in candidates:
        if all((folder / name).exists() for name in expected):
            return folder
    return None


def not_found(dataset: str, searched: Iterable[Path], expected: Sequence[str], hint: str = "") -> DataNotFoundError:
    """The error every loader raises when its data is missing (not local and not downloadable)."""
    searched = list(searched)
    where = ", ".join(str(p) for p in searched) if searched else f"(no data directory: set {ENV_DATA_DIR} or data_dir)"
    msg = f"{dataset}: data not found. Searched: {where}. Expected files: {', '.join(expected)}."
    if hint:
        msg += f" {hint}"
    return DataNotFoundError(msg)


def locate(dataset: str, searched: Sequence[Path], find: Callable[[Path], T | None], expected: Sequence[str], *,
           downloads: Path, download: Callable[[], object] | None, hint: str,
           find_download: Callable[[Path], T | None] | None = None) -> T:
    """Rules 1-3 of the module docstring: what `find(folder)` finds in the first of the `searched` data-directory
    folders that has the data, else in `downloads` (an earlier download in the cache; `find_download` if given),
    else there after `download()` (None when downloading is off), else a `DataNotFoundError` naming every folder
    searched, the `expected` files and `hint`."""
    for folder in searched:
        found = find(folder)
        if found is not None:
            return found
    find_download = find_download or find
    found = find_download(downloads)
    if found is None and download is not None:
        fetch(download, dataset, [*searched, downloads], expected)
        found = find_download(downloads)
    if found is None:
        raise not_found(dataset, [*searched, downloads], expected, hint=hint)
    return found


def torchvision_download(name: str, root: Path) -> Callable[[], object]:
    """The download of torchvision's dataset class `name` (`MNIST`, `CIFAR10`, ...) into `root`, for `locate`."""

    def download() -> object:
        import torchvision.datasets

        return getattr(torchvision.datasets, name)(root=str(root), download=True)

    return download


def fetch(download: Callable[[], T], dataset: str, searched: Iterable[Path], expected: Sequence[str]) -> T:
    """Run a library's download; a network or server failure (URLError, HTTPError, a timeout, torchvision's
    "Error downloading") is a `DataNotFoundError` naming the folders searched, not a traceback."""
    try:
        return download()
    except (OSError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = f"The download failed ({reason}); copy the files there."
        raise not_found(dataset, searched, expected, hint=hint) from err


def source_key(*parts: object, files: Iterable[Path] = ()) -> str:
    """A short cache key from settings and the identity (path, size, mtime) of the source files."""
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def cache_path(cache_dir: PathLike, dataset: str, name: str, *parts: object, files: Iterable[Path] = (),
               suffix: str = ".pt") -> Path:
    """`<cache>/<dataset>/<name>-<key><suffix>`, the key made of `parts` and the `files`' identities (`source_key`)."""
    return cache_root(cache_dir) / dataset / f"{name}-{source_key(*parts, files=files)}{suffix}"


def decoded(cache_dir: PathLike, dataset: str, name: str, *parts: object, files: Iterable[Path],
            build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors `build` decodes from `files` with settings `parts`, cached at `cache_path` (built only once)."""
    return cached(cache_path(cache_dir, dataset, name, *parts, files=files), build)


def cached(path: Path, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Load `path` if it exists, else build the tensors, write them atomically (temp file + rename), return them."""
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    tensors = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(tensors, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tensors
