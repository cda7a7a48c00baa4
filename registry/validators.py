"""Validators shared by registry fields."""

from __future__ import annotations

import math
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from radtrust_engine.paths import PathRefused, resolve_within
from radtrust_engine.preprocessing import Preprocessing

# A location written as a path (POSIX or Windows, absolute, home-relative or relative), as opposed to
# a description such as "generated in memory at training time".
_PATH_LIKE = re.compile(r"^(/|\\|~|\.{1,2}([/\\]|$)|[A-Za-z]:[/\\])")


def validate_json_safe(value) -> None:
    """Refuse what valid JSON columns cannot store: NaN/Infinity and NUL characters (PostgreSQL jsonb refuses both)."""

    def walk(node, where: str) -> None:
        if isinstance(node, float) and not math.isfinite(node):
            raise ValidationError(f"{where or 'The value'} is {node}; use a finite number.")
        if isinstance(node, str) and "\x00" in node:
            raise ValidationError(f"{where or 'The value'} contains a NUL character.")
        if isinstance(node, dict):
            for key, item in node.items():
                walk(key, f"Key {key!r}")
                walk(item, f"{where}/{key}" if where else str(key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    walk(value, "")


def data_folder(location: str) -> Path:
    """The folder a dataset location names, resolved (symbolic links followed), if it lies under one of
    ``RADTRUST_DATA_ROOTS``: the only files a worker reads.

    The refusal names neither the roots nor where a link leads: a registry user learns only that the
    folder is not one this server reads.
    """
    path = Path(location)
    if not path.is_absolute():
        raise ValidationError("Give the dataset's folder as an absolute path under one of the data roots this server reads.")
    try:
        return resolve_within(path, settings.RADTRUST_DATA_ROOTS)
    except PathRefused:
        raise ValidationError(
            "This folder is outside the data roots this server reads (RADTRUST_DATA_ROOTS), or a symbolic link leads out of them; "
            "ask the operator which folders hold datasets."
        ) from None


def validate_location(value: str) -> None:
    """A dataset's location: empty, a description of where the data lives (such as "generated in memory"),
    or a folder under a data root. Anything written as a path must be that folder, so a location a
    worker would refuse is refused when it is stored, not when a run starts."""
    text = (value or "").strip()
    if any(ord(c) < 32 for c in text):
        raise ValidationError("The location contains a control character.")
    if _PATH_LIKE.match(text):
        data_folder(text)


def validate_preprocessing(value) -> None:
    """The engine's own check of a preprocessing spec (``Preprocessing.from_spec``), so a spec a run would
    refuse (an unknown key, a resize of [-1, 10**12]) is refused when the version is registered."""
    try:
        Preprocessing.from_spec(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
