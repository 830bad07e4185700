"""A tiny document model for the report: a list of blocks, written as Markdown or as one
self-contained HTML page (figures inline).
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

Block = tuple  # ("h1"|"h2"|"h3"|"p"|"list", text or items) | ("table", DataFrame) | ("fig", name, caption)


def _md_cell(v) -> str:
    if isinstance(v, float):
        v = f"{v:g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "banner":
            out.append(f"> **{b[1]}** {b[2]}")
        elif kind == "details":
            out.append(f"<details><summary>{b[1]}</summary>\n\n{b[2]}\n\n</details>")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "table":
            out.append(md_table(b[1]))
        elif kind == "fig":
            out.append(f"![{b[2]}](figures/{b[1]}.png)\n\n*{b[2]}* ([PDF](figures/{b[1]}.pdf))")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", t)


CSS = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}
code{background:#f3f3f3;padding:0 .2rem}.reproduced{color:#17702a}.not-reproduced{color:#a31515}.inconclusive{color:#a36a00}.not-tested{color:#666}
.banner{background:#fff4d6;border:1px solid #e0b84c;padding:.5rem .8rem}"""


def to_html(blocks: list[Block], fig_dir: Path, title: str) -> str:
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline_html(b[1])}</{kind}>")
        elif kind == "p":
            cls = ""
            m = re.match(r"\*\*Verdict: (.+?)\*\*", b[1])
            if m:
                cls = f' class="{m.group(1).split(" (")[0].replace(" ", "-")}"'
            body.append(f"<p{cls}>{_inline_html(b[1])}</p>")
        elif kind == "banner":
            body.append(f'<p class="banner"><strong>{_inline_html(b[1])}</strong> {_inline_html(b[2])}</p>')
        elif kind == "details":
            body.append(f"<details><summary>{_inline_html(b[1])}</summary><p>{_inline_html(b[2])}</p></details>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            body.append(b[1].to_html(index=False, border=0, na_rep="—", float_format=lambda x: f"{x:g}"))
        elif kind == "fig":
            png = fig_dir / f"{b[1]}.png"
            data = base64.b64encode(png.read_bytes()).decode() if png.exists() else ""
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(b[2])}</figcaption></figure>")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
