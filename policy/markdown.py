"""Policy text: Markdown rendered safely, with headings as addressable clauses.

markdown-it-py renders with raw HTML disabled, and nh3 (ammonia) sanitizes the result anyway, so
neither a `<script>` in the source nor a `javascript:` link survives. Each heading gets a stable
anchor derived from its text, so a clause keeps its anchor across versions while its title does.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "li", "strong", "em", "code", "pre", "blockquote",
    "a", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "del",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "h1": {"id"}, "h2": {"id"}, "h3": {"id"}, "h4": {"id"},
                      "h5": {"id"}, "h6": {"id"}, "th": {"align"}, "td": {"align"}}


@dataclass(frozen=True)
class Clause:
    anchor: str
    title: str
    level: int
    order: int
    line: int = 0  # the heading's 0-based line in the text


def slugify(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80] or "section"


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def extract_clauses(text: str) -> list[Clause]:
    return _clauses(_parser().parse(text or ""))


def _clauses(tokens: list) -> list[Clause]:
    clauses: list[Clause] = []
    used: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        title = tokens[i + 1].content.strip()
        base = slugify(title)
        # Repeated headings get -2, -3 … in document order, like GitHub's anchors.
        used[base] = used.get(base, 0) + 1
        anchor = base if used[base] == 1 else f"{base}-{used[base]}"
        clauses.append(Clause(anchor=anchor, title=title, level=int(token.tag[1]), order=len(clauses),
                              line=token.map[0] if token.map else 0))
    return clauses


@lru_cache(maxsize=64)
def render_policy(text: str) -> SafeString:
    """Sanitized HTML with an id on every heading (the clause anchor), marked safe for templates:
    raw HTML is disabled in the parser and nh3 cleans the output, so this is the one place that
    vouches for policy HTML.

    markdown-it-py parses about 20-40k characters a second, so the text is parsed once (clauses
    come from the same tokens) and the HTML of recent texts is kept: published versions never
    change, and a draft page is viewed far more often than it is edited.
    """
    md = _parser()
    tokens = md.parse(text or "")
    anchors = iter(_clauses(tokens))
    for token in tokens:
        if token.type == "heading_open":
            token.attrSet("id", f"clause-{next(anchors).anchor}")
    html = md.renderer.render(tokens, md.options, {})
    return mark_safe(nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                               url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow"))
