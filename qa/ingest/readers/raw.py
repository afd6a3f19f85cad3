"""What the text-based readers share: read a file's bytes, and refuse bytes that are not text."""

from __future__ import annotations

import codecs

from qa.ingest.formats import LoadError

#: Bytes looked at to tell text from binary.
SNIFF_BYTES = 8192


def read_bytes(path: str) -> bytes:
    """The whole file, or ``LoadError`` naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from exc


def check_not_binary(path: str, data: bytes) -> None:
    """``LoadError`` if the start of ``data`` has a NUL byte or mostly control characters (UTF-16 with BOM is text)."""
    head = data[:SNIFF_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    controls = sum(1 for b in head if b < 32 and b not in b"\t\n\r\x0c")
    if b"\x00" in head or controls > len(head) * 0.3:
        raise LoadError(f"{path}: looks binary, not text; convert it to a supported format or remove it")
