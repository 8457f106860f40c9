"""Turning a sender-chosen file name into one that is safe to create.

The name in a file descriptor is whatever the sender wrote, and the sender
may be hostile: ``../../.bashrc``, ``C:\\Windows\\x.dll``, ``CON``, a right-to-left
override that makes ``exe.pdf`` look like ``pdf.exe``.  :func:`sanitise_file_name`
is pure (no I/O); choosing a name that does not collide with an existing file
is the client's job, since only it can look at the disk.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_FILE_NAME_BYTES", "sanitise_file_name"]

MAX_FILE_NAME_BYTES = 255  # the common limit of ext4, APFS and NTFS (in UTF-8 bytes here)
_FALLBACK = "file"
_MAX_EXTENSION_BYTES = 32  # longer "extensions" are part of the name, and may be cut
# Characters Windows refuses in a name; ':' would also open an NTFS alternate data stream.
_RESERVED = frozenset('<>:"|?*')
# Unicode categories that are invisible or reorder text: controls, format characters
# (bidirectional overrides, zero-width joiners), line and paragraph separators, and
# surrogates (which cannot even be encoded).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PORT_DIGITS = "123456789\u00b9\u00b2\u00b3"  # Windows also reserves COM\u00b9 to COM\u00b3
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {port + n for port in ("COM", "LPT") for n in _PORT_DIGITS}
)


def sanitise_file_name(name: str) -> str:
    """A name that is safe to create in a directory of the recipient's choosing.

    Only the last path component survives (``/`` and ``\\`` both separate);
    invisible and control characters are removed and Windows-reserved ones
    become ``_``; leading dots and spaces (hidden files, ``..``) and trailing
    dots and spaces (which Windows drops) go; a Windows device name, with or
    without an extension, in any case, gets a ``_`` in front; the result is
    at most 255 UTF-8 bytes, cut in the stem so the extension survives; and it
    is never empty (``file``).  Applying it twice changes nothing.
    """
    component = name.replace("\\", "/").rsplit("/", 1)[-1]
    component = unicodedata.normalize("NFC", component)
    kept = (
        "_" if char in _RESERVED else char
        for char in component
        if unicodedata.category(char) not in _DROPPED_CATEGORIES
    )
    cleaned = _strip_ends("".join(kept))
    if _is_device_name(cleaned):
        cleaned = "_" + cleaned
    cleaned = _strip_ends(_fit(cleaned))
    return cleaned or _FALLBACK


def _strip_ends(name: str) -> str:
    """No leading dots or whitespace, no trailing dots or whitespace (any mix of them)."""
    start, end = 0, len(name)
    while start < end and (name[start] == "." or name[start].isspace()):
        start += 1
    while end > start and (name[end - 1] == "." or name[end - 1].isspace()):
        end -= 1
    return name[start:end]


def _is_device_name(name: str) -> bool:
    """Windows treats ``CON``, ``con.txt`` and ``CON .tar.gz`` all as the console device."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _DEVICE_NAMES


def _fit(name: str) -> str:
    """Cut ``name`` to at most :data:`MAX_FILE_NAME_BYTES`, keeping a short extension."""
    if len(name.encode("utf-8")) <= MAX_FILE_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode("utf-8")) > _MAX_EXTENSION_BYTES:
        stem, suffix = name, ""
    budget = MAX_FILE_NAME_BYTES - len(suffix.encode("utf-8"))
    # Cut at a character boundary: decoding with "ignore" drops a split last character.
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return cut + suffix
