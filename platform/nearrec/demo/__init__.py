"""The bundled demo catalog: a small mixed shop (books, games, outdoor, kitchen, ...) written for nearrec.

`items.csv`, `users.csv` and `interactions.csv` ship inside the package; `demo_path` finds them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nearrec.errors import InputFileError

DEMO_FILES: tuple[str, ...] = ("items.csv", "users.csv", "interactions.csv")


def demo_path(name: str) -> Path:
    """Return the filesystem path of the bundled demo file `name` (one of `DEMO_FILES`).

    Raises InputFileError for an unknown name, or when the package is not installed on a filesystem
    (e.g. imported from a zip archive), or when the file is missing from the installation.
    """
    if name not in DEMO_FILES:
        raise InputFileError(name, f"not a demo file; expected one of {', '.join(DEMO_FILES)}")
    resource = resources.files(__name__).joinpath(name)
    if not isinstance(resource, Path):
        raise InputFileError(name, "the nearrec package is not installed on a filesystem")
    if not resource.is_file():
        raise InputFileError(str(resource), "demo file is missing from the installation")
    return resource
