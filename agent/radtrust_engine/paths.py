"""Containment of the files a worker, the server or a site agent opens, and paths kept out of messages.

Every path built from something a user wrote (a dataset's location, a manifest's name, an image or
mask path in a manifest) is resolved, symbolic links followed, and must land under the folder it
belongs to: the configured data roots for a dataset's folder, the dataset's folder for everything in
it. Checking the words alone (no ``..``, not absolute) is not enough, because a symbolic link in the
dataset folder can point anywhere on the machine (``manifest.csv -> /etc/radtrust.env``).

Messages that a run's readers see name files relative to their dataset folder and never quote where
a link leads or another absolute path; ``without_paths`` removes the paths that a library's own
message quotes (Pillow, pydicom, nibabel and onnx name the file they failed to open).

Plain Python (no Django).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class PathRefused(ValueError):
    """A path that cannot be resolved or resolves outside every folder it must stay in; the message names no path."""


def resolve_within(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """``path`` resolved (symbolic links followed, ``..`` folded), if it lies under one of ``roots``.

    The roots are resolved too, so a root that is itself a link is judged by where it leads. The
    path need not exist (a missing file is the caller's "not found", not a refusal). A path that
    cannot be resolved (a NUL character, a link loop, a name too long) is refused like one outside.
    """
    try:
        resolved = Path(path).resolve()
        folders = [Path(root).resolve() for root in roots]
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symbolic link loop (Python 3.11)
        raise PathRefused("the path cannot be resolved (a NUL character, a symbolic link loop or a name too long)") from None
    if not any(resolved.is_relative_to(folder) for folder in folders):
        raise PathRefused("the path leads outside the folders it must stay in")
    return resolved


def without_paths(text: str, *paths: str | os.PathLike) -> str:
    """``text`` with the absolute paths among ``paths`` (as given and resolved) taken out: a path inside
    one of them is shown relative to it, and the path itself by its last part.

    For exception messages of libraries that quote the file they opened (or the folder it lies in);
    the caller names the file itself, relative to its dataset folder. Longer paths are replaced first,
    so a file inside a folder that is also listed keeps its own name.
    """
    names: dict[str, str] = {}
    for path in paths:
        given = Path(path)
        names[str(given)] = given.name
        try:
            names[str(given.resolve())] = given.name
        except (OSError, RuntimeError, ValueError):
            pass
    for variant in sorted(names, key=len, reverse=True):
        if len(variant) > 1:
            text = text.replace(variant + os.sep, "").replace(variant, names[variant])
    return text
