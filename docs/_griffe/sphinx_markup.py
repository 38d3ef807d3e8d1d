"""A griffe extension for the API reference: the package's docstrings are written for reading in the source
(Sphinx roles, ``>>>`` examples without fences); mkdocstrings renders them as Markdown. This rewrites the two
things Markdown would misread, on the docstring text only (the sources are unchanged):

- a run of ``>>>`` / ``...`` lines becomes a fenced ``pycon`` block (else ``x["a"][0]`` reads as a link);
- a Sphinx role (:class:`~a.b.C`, :meth:`a.b.f`, ...) becomes inline code (``C``, ``a.b.f``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    in_block = False
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        is_doctest = stripped.startswith(">>>") or (in_block and stripped.startswith("..."))
        if is_doctest and not in_block:
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_block = True
        elif not is_doctest and in_block:
            out.append(f"{indent}```")
            in_block = False
        out.append(line)
    if in_block:
        out.append(f"{indent}```")
    return "\n".join(out)


def rewrite(text: str) -> str:
    """The docstring ``text`` as mkdocstrings should read it."""
    parts = re.split(r"(^\s*>>>.*$(?:\n^\s*(?:>>>|\.\.\.).*$)*)", text, flags=re.M)
    # roles inside a doctest stay as written; elsewhere they become code
    return _fence_doctests("".join(p if p.lstrip().startswith(">>>") else ROLE.sub(_role, p) for p in parts))


class SphinxMarkup(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
