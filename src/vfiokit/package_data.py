"""Files installed beside vfiokit's modules (the samples, the boards, the report page): their paths
and their text, with `os`.

pip and the Debian package alike install them as plain files in the package's folder.
`importlib.resources` would find them too, but imports tempfile and pathlib (about 5 ms) into every
command that names a sample or a board.
"""

from __future__ import annotations

import os

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def path(*parts: str) -> str:
    """The path of a file or folder of the package: `path("samples", "lab")`."""
    return os.path.join(PACKAGE, *parts)


def read_text(*parts: str) -> str:
    """The text of a file of the package (UTF-8)."""
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()
