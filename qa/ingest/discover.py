"""The one folder walker: which files under the given paths are articles to read, and why the rest are skipped.

Folders are read recursively in sorted order. Hidden files and folders (a
name starting with ".") are ignored; a symlink that leads out of the given
folder is not followed; a file reached twice (two given paths, a
link inside the folder) is listed once. Everything else that is not read is
skipped with a one-line message naming the file and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence

from qa.ingest.formats import SUPPORTED_SUFFIXES, LoadError, suffix_of, unsupported

logger = logging.getLogger(__name__)


def discover_files(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """The files to read under ``paths``, in order (each real file once), and a skip message for each other one.

    A given path that does not exist raises ``LoadError``; anything found
    inside a folder that cannot be read is a skip message instead.
    """
    files: list[str] = []
    skipped: list[str] = []
    seen: set[str] = set()

    def skip(message: str) -> None:
        logger.debug("skipped %s", message)  # the caller shows each skip once (the CLI, the status line)
        skipped.append(message)

    for given in paths:
        if not os.path.lexists(given):
            raise LoadError(f"{os.fspath(given)} does not exist; check the path")
        for path in _discover(os.fspath(given), skip):
            try:  # the same file reached twice (two given paths, a link): once; (device, inode) costs one stat
                st = os.stat(path)
                key = f"{st.st_dev}:{st.st_ino}"
            except OSError:
                key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, skipped


def _discover(given: str, skip: Callable[[str], None]) -> Iterator[str]:
    """Yield the files to read for one user-given path, reporting skips via ``skip``."""
    if os.path.isdir(given):
        root = os.path.realpath(given)
        yield from _walk(given, root, {root}, skip)
    elif suffix_of(given) in SUPPORTED_SUFFIXES:
        yield given
    elif os.path.exists(given):
        skip(unsupported(given))
    else:
        skip(f"{given}: broken symlink; fix or remove it")


def _walk(folder: str, root: str, visited: set[str], skip: Callable[[str], None]) -> Iterator[str]:
    """Recurse into ``folder`` in sorted order, skipping hidden entries and escaping symlinks."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        skip(f"{folder}: cannot list folder ({exc.strerror or exc}); check its permissions")
        return
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith("."):
            logger.debug("ignoring hidden %s", path)
            continue
        is_link = os.path.islink(path)
        real = os.path.realpath(path) if is_link else ""  # resolving every plain file costs an lstat per path part
        if is_link and os.path.commonpath([root, real]) != root:
            skip(f"{path}: symlink to {real}, outside {root}; not followed")
            continue
        if os.path.isdir(path):
            real = real or os.path.realpath(path)
            if real in visited:
                logger.debug("already walked %s", path)
                continue
            yield from _walk(path, root, visited | {real}, skip)
        elif not os.path.exists(path):
            skip(f"{path}: broken symlink; fix or remove it")
        elif suffix_of(path) in SUPPORTED_SUFFIXES:
            yield path
        else:
            skip(unsupported(path))
