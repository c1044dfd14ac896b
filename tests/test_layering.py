"""Imports go one way (README "Project layout", docs/architecture.md):

    cli -> render -> analyses -> model, formats
    cli -> sources -> model, formats
    cli -> edits -> model, formats

nothing imports `cli`; `formats` and `model` import nothing of ours but each other and `errors`.
Every import in `src/vfiokit` is read with `ast` (inside functions and `if TYPE_CHECKING:` too,
relative or absolute, `import vfiokit.x` or `from vfiokit import x`) and checked against the table
below; a second test feeds the checker known-bad imports so it cannot pass by seeing nothing.

Where the modules outside the layer folders sit:
- `vfiokit` (`__init__`, `__version__`), `vfiokit.errors`, `vfiokit.gc_pause` (the cyclic
  collector paused around a large build) and `vfiokit.package_data` (the files installed beside
  the modules): the base, every layer may import it;
- `vfiokit.rootfs` (the sources' reader toolkit, which the writer resolves paths with too): below
  `sources` and `edits`, imports only the base;
- `vfiokit.pciids`: with `formats`, a lookup over the system's read-only pci.ids table (data the
  product ships with its dependencies, not a fact about this machine), which `render` needs for
  names and which holds no policy;
- `vfiokit.__main__`: `cli`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: What each layer may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset({"render", "analyses", "sources", "edits", "formats", "model", "rootfs", "base"}),
    "render": frozenset({"analyses", "formats", "model", "base"}),
    "analyses": frozenset({"formats", "model", "base"}),
    "sources": frozenset({"formats", "model", "rootfs", "base"}),
    "edits": frozenset({"formats", "model", "rootfs", "base"}),
    "formats": frozenset({"model", "base"}),
    "model": frozenset({"formats", "base"}),
    "rootfs": frozenset({"base"}),
    "base": frozenset(),
}
_FOLDERS = ("cli", "render", "analyses", "sources", "edits", "formats")
_SINGLE = {"vfiokit": "base", "vfiokit.errors": "base", "vfiokit.gc_pause": "base",
           "vfiokit.package_data": "base", "vfiokit.__main__": "cli",
           "vfiokit.model": "model", "vfiokit.rootfs": "rootfs", "vfiokit.pciids": "formats"}


def layer_of(module: str) -> str | None:
    """The layer of a `vfiokit...` module name; None for a module the table does not place."""
    if module in _SINGLE:
        return _SINGLE[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in _FOLDERS else None


def imported(module: str, is_package: bool, source: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every vfiokit module that `source` imports, anywhere in the file.
    `from pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vfiokit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vfiokit":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if sub in known else target))
    return out


def violations(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import against the allowed direction, one line each, for modules given as
    {name: (source, is_package)}."""
    known = set(modules)
    bad = []
    for name, (source, is_package) in sorted(modules.items()):
        mine = layer_of(name)
        if mine is None:
            bad.append(f"{name}: no layer (place it in tests/test_layering.py and the README)")
            continue
        for line, target in imported(name, is_package, source, known):
            theirs = layer_of(target)
            if theirs is None:
                bad.append(f"{name}:{line}: imports {target}, which has no layer")
            elif theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{name}:{line}: {mine} imports {theirs} ({target}); "
                           f"{mine} may import only {', '.join(sorted(ALLOWED[mine])) or 'nothing of ours'}")
    return bad


def _source_tree() -> dict[str, tuple[str, bool]]:
    out = {}
    for path in sorted((SRC / "vfiokit").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        is_package = rel.name == "__init__"
        name = ".".join(rel.parts[:-1] if is_package else rel.parts)
        out[name] = (path.read_text(encoding="utf-8"), is_package)
    return out


def test_every_import_goes_the_one_way() -> None:
    tree = _source_tree()
    assert len(tree) > 40, "the walk found too few modules to mean anything"
    bad = violations(tree)
    assert not bad, "imports against the layering (cli -> render -> analyses -> model, formats; " \
        "cli -> sources/edits -> model, formats):\n" + "\n".join(bad)


_STUBS = {name: ("", name.count(".") == 1 and name != "vfiokit.model")
          for name in ("vfiokit", "vfiokit.errors", "vfiokit.model", "vfiokit.cli", "vfiokit.render",
                       "vfiokit.analyses", "vfiokit.sources", "vfiokit.edits", "vfiokit.formats")}
_STUBS["vfiokit"] = ("__version__ = '0'\n", True)
_STUBS.update({m: ("", False) for m in ("vfiokit.cli.main", "vfiokit.render.text", "vfiokit.analyses.judge",
                                        "vfiokit.sources.sysfs", "vfiokit.edits.writer", "vfiokit.formats.grub")})


@pytest.mark.parametrize(("module", "source", "layers"), [
    # today's back-imports, in each spelling the walk must see
    ("vfiokit.sources.sysfs", "from vfiokit.edits import writer\n", "sources imports edits"),
    ("vfiokit.edits.writer", "import vfiokit.sources.sysfs\n", "edits imports sources"),
    ("vfiokit.analyses.judge", "def f():\n    from vfiokit.edits.writer import x\n", "analyses imports edits"),
    ("vfiokit.edits.writer", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from ..analyses.judge import Plan\n", "edits imports analyses"),
    ("vfiokit.formats.grub", "from vfiokit.sources import sysfs\n", "formats imports sources"),
    ("vfiokit.model", "from .analyses import judge\n", "model imports analyses"),
    ("vfiokit.render.text", "from vfiokit.cli import main\n", "render imports cli"),
    ("vfiokit.analyses.judge", "from vfiokit.render.text import f\n", "analyses imports render"),
    ("vfiokit.sources.sysfs", "from vfiokit import edits\n", "sources imports edits"),
])
def test_the_check_catches_a_back_import(module: str, source: str, layers: str) -> None:
    modules = dict(_STUBS)
    modules[module] = (source, modules[module][1])
    bad = violations(modules)
    assert len(bad) == 1 and f"{module}:" in bad[0] and layers in bad[0], bad


def test_the_check_allows_the_one_way_and_names_an_unplaced_module() -> None:
    modules = dict(_STUBS)
    modules["vfiokit.cli.main"] = ("from vfiokit.render import text\nfrom vfiokit.edits import writer\n"
                                   "from vfiokit import __version__\n", False)
    modules["vfiokit.render.text"] = ("from ..analyses import judge\nimport vfiokit.formats.grub\n", False)
    modules["vfiokit.formats.grub"] = ("from vfiokit.errors import BadInput\nfrom vfiokit import model\n", False)
    assert violations(modules) == []
    modules["vfiokit.stray"] = ("", False)
    assert violations(modules) == ["vfiokit.stray: no layer (place it in tests/test_layering.py and the README)"]


def test_no_command_imports_another_command() -> None:
    """A command module (one `cli.COMMANDS` names) shares code through `cli/common.py`, `cli/remote.py`,
    `cli/confirm.py`... never by importing another command (issue 11: `see -> check`, `cluster ->
    attach` were the knots)."""
    from vfiokit.cli import COMMANDS

    commands = set(COMMANDS.values())
    tree = _source_tree()
    known = set(tree)
    crossing = [f"{name}:{line}: imports the command module {target}"
                for name in sorted(commands) for line, target in imported(name, tree[name][1], tree[name][0], known)
                if target in commands and target != name]
    assert not crossing, "\n".join(crossing)
