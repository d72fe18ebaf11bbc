"""File names for students: one name, one file, on every file system.

A student id is a submission folder's name and can hold anything a file name can: accents, spaces,
slashes in a zip, upper and lower case. Pages and per-student files need a name that stays inside
the report folder and is safe in a URL, and two distinct students must never share one, on a
case-insensitive file system too (macOS, Windows, a zip opened there).

- A **plain** id (ASCII letters, digits, ``_``, ``.``, single ``-``; not starting with ``.`` or
  ``-``, at most 80 characters) is its own stem: ``alice`` → ``alice.html``.
- Any other id gets a readable slug (unsafe characters as ``_``) and ``--`` and the first 6 hex
  digits of the sha256 of the exact id: ``Zoë`` → ``Zo_--2ce2f7.html``. A plain id never contains
  ``--``, so it can never be taken for one of these.
- Within a class, stems are compared lowercased. Ids whose stems would meet (``Alice`` and
  ``alice``, or two slugs whose 6 digits agree) all get the slug and the full 64-digit hash
  instead, which no one can choose to match. A 6-digit stem and a 64-digit one cannot be equal
  (their last eight characters differ in form), so the mapping is one-to-one.

`file_stems(names)` is the mapping for a class; every sink that writes one file per student uses it,
and so do the links between pages.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

_PLAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.]|-(?!-))*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_PLAIN = 80
MAX_SLUG = 60
SHORT_HASH = 6


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def is_plain(name: str) -> bool:
    """Whether `name` is used as its own file stem (see the module's docstring)."""
    return len(name) <= MAX_PLAIN and _PLAIN.fullmatch(name) is not None and not name.endswith(".")


def slug(name: str) -> str:
    """The readable part of a hashed stem: ASCII, no path separator, not starting with a dot."""
    return _UNSAFE.sub("_", name).lstrip(".")[:MAX_SLUG] or "student"


def preferred_stem(name: str) -> str:
    """The stem of `name` when no other student's stem meets it."""
    return name if is_plain(name) else f"{slug(name)}--{_digest(name)[:SHORT_HASH]}"


def full_stem(name: str) -> str:
    """The stem of `name` when its preferred one meets another student's: the slug and the full hash."""
    return f"{slug(name)}--{_digest(name)}"


def file_stems(names: Iterable[str]) -> dict[str, str]:
    """Each distinct name's file stem, one-to-one, also when compared lowercased."""
    unique = list(dict.fromkeys(names))
    groups: dict[str, list[str]] = defaultdict(list)
    for name in unique:
        groups[preferred_stem(name).lower()].append(name)
    stems = {}
    for members in groups.values():
        for name in members:
            stems[name] = preferred_stem(name) if len(members) == 1 else full_stem(name)
    return stems
