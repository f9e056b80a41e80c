"""A report as a list of blocks, rendered to Markdown (figures linked relatively) and to one
self-contained HTML page (figures embedded as data URIs; no external reference of any kind).

Inline markup is limited to `code` spans, the only one both renderers need.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report, e.g. figures/rel_rmse-base.png
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A collapsible group in HTML (open when ``open``); plain headed text in Markdown."""

    title: str
    blocks: list = field(default_factory=list)
    open: bool = True
    level: int = 2


Block = Heading | Para | Bullets | Table | Image | Section


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(f"{b.text}\n")
        elif isinstance(b, Bullets):
            out.append("".join(f"- {i}\n" for i in b.items))
        elif isinstance(b, Table):
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                "|" + "|".join(" --- " for _ in b.header) + "|",
                *("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows),
            ]
            if b.caption:
                lines.insert(0, f"{b.caption}\n")
            out.append("\n".join(lines) + "\n")
        elif isinstance(b, Image):
            text = f"![{b.alt}]({b.path})"
            out.append(text + (f"\n\n*{b.caption}*" if b.caption else "") + "\n")
        elif isinstance(b, Section):
            out.append(f"{'#' * b.level} {b.title}\n")
            out.append(to_markdown(b.blocks))
    return "\n".join(out)


def _h_inline(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; border-radius: 3px; }
img { max-width: 100%; height: auto; } figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
details { margin: 0.5em 0 1em; } summary { cursor: pointer; font-weight: 600; font-size: 1.2em; }
"""


def _html_blocks(blocks: list[Block], root: Path) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_h_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_h_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_h_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_h_inline(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{_h_inline(c)}</td>" for c in r) + "</tr>" for r in b.rows
            )
            cap = f"<caption>{_h_inline(b.caption)}</caption>" if b.caption else ""
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode((root / b.path).read_bytes()).decode("ascii")
            cap = f"<figcaption>{_h_inline(b.caption)}</figcaption>" if b.caption else ""
            out.append(
                f'<figure><img alt="{html.escape(b.alt)}" '
                f'src="data:image/png;base64,{data}">{cap}</figure>'
            )
        elif isinstance(b, Section):
            inner = "\n".join(_html_blocks(b.blocks, root))
            opened = " open" if b.open else ""
            out.append(
                f"<details{opened}><summary>{_h_inline(b.title)}</summary>\n{inner}\n</details>"
            )
    return out


def to_html(title: str, blocks: list[Block], root: Path) -> str:
    """One page; ``root`` is the report folder the Image paths are relative to."""
    body = "\n".join(_html_blocks(blocks, root))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
