"""Open a page in Debian's chromium, headless: the DOM after its scripts ran, a screenshot, a PDF.

The page's state is chosen with its URL fragment (`#override=...&device=...`), the same fragment a
click sets, so one `--dump-dom` captures a clicked state without a browser driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

# Flags that run as root in a container: no sandbox, no GPU, nothing fetched in the background.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # The page inflates its data asynchronously; virtual time lets every task finish first.
         "--virtual-time-budget=30000"]


def chromium() -> str:
    """The browser. Missing on a developer's machine: skip; in CI: fail."""
    path = shutil.which("chromium")
    if path is None:
        msg = "chromium is not installed (bash scripts/setup-debian.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _run(page: Path, fragment: str, *args: str) -> str:
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="vfiokit-chromium-") as profile:
        r = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url],
                           capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def dump_dom(page: Path, fragment: str = "") -> str:
    return _run(page, fragment, "--dump-dom")


def screenshot(page: Path, out: Path, fragment: str = "", size: str = "1400,2400") -> Path:
    _run(page, fragment, f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars")
    return out


def print_pdf(page: Path, out: Path) -> Path:
    _run(page, "", f"--print-to-pdf={out}", "--no-pdf-header-footer")
    return out


class Node:
    """An element of the dumped DOM: tag, attributes, children, text."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.parts: list[str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(self.parts)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [n for n in self.walk() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}> in the page"
        return found[0]

    def style(self) -> dict[str, str]:
        out = {}
        for part in self.attrs.get("style", "").split(";"):
            if ":" in part:
                k, v = part.split(":", 1)
                out[k.strip()] = v.strip()
        return out


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in _VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        n = self.cur
        while n is not None:
            n.parts.append(data)
            n = n.parent


def parse(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    return b.root
