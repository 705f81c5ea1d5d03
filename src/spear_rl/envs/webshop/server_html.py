"""Reading the pages of an original WebShop server (its Flask app's HTML) into plain page data.

Only the parts an agent sees in text mode are read: the instruction, the results header and rows
(asin, title, price), an item's option groups (its radio inputs), title and price, the description
or feature bullets, and the score on the done page. The parser is forgiving: WebShop's templates
close some headings with the wrong tag, so each text node is classified by the innermost enclosing
element that has a class or id we know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from spear_rl.envs.webshop.pages import ResultRow

_VOID_TAGS = {"input", "img", "br", "hr", "link", "meta", "source", "area", "col", "wbr"}
_KNOWN_MARKERS = ("product-link", "product-title", "product-price", "product-info", "reward")
_RESULTS_HEADER = re.compile(
    r"Page\s+(\d+)\s*(?:\(Total results:\s*(\d+)\)|\([^)]*\)\s*of\s+(\d+)\s+total results)",
    re.IGNORECASE,
)
_SCORE_LABEL = "your score (min 0.0, max 1.0)"


@dataclass
class _Text:
    text: str
    tag: str  # innermost enclosing tag
    marker: str  # innermost known class/id ("" when none)
    in_instruction: bool


@dataclass
class ParsedPage:
    texts: list[_Text] = field(default_factory=list)
    radios: list[tuple[str, str]] = field(default_factory=list)  # (name, value) in page order


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage()
        self._stack: list[tuple[str, str, bool]] = []  # (tag, marker, is_instruction)
        self._skip = 0  # inside <script>/<style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "input" and values.get("type", "").lower() == "radio":
            self.page.radios.append((values.get("name", ""), values.get("value", "")))
        if tag in _VOID_TAGS:
            return
        if tag in ("script", "style"):
            self._skip += 1
        names = values.get("class", "").split() + [values.get("id", "")]
        marker = next((m for m in _KNOWN_MARKERS if m in names), "")
        self._stack.append((tag, marker, values.get("id", "") == "instruction-text"))

    def handle_endtag(self, tag: str) -> None:
        # Close up to the nearest open element of this tag; a stray end tag closes nothing.
        for depth in range(len(self._stack) - 1, -1, -1):
            if self._stack[depth][0] == tag:
                if tag in ("script", "style"):
                    self._skip = max(0, self._skip - 1)
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if not text or self._skip:
            return
        tag = self._stack[-1][0] if self._stack else ""
        marker = next((m for _, m, _ in reversed(self._stack) if m), "")
        in_instruction = any(flag for _, _, flag in self._stack)
        self.page.texts.append(_Text(text, tag, marker, in_instruction))


def parse_html(html: str) -> ParsedPage:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.page


class UnexpectedPageError(ValueError):
    """The server sent a page that does not have the expected WebShop shape."""


def read_instruction(page: ParsedPage) -> str:
    text = " ".join(t.text for t in page.texts if t.in_instruction)
    text = re.sub(r"^Instruction:\s*", "", text, flags=re.IGNORECASE).strip()
    if not text:
        raise UnexpectedPageError("no instruction text (id='instruction-text') on the search page")
    return text


def read_results(page: ParsedPage) -> tuple[int, int, list[ResultRow]]:
    """(page number, total results, rows) of a results page."""
    header = next((m for t in page.texts if (m := _RESULTS_HEADER.search(t.text))), None)
    if header is None:
        raise UnexpectedPageError("no 'Page N ... total results' header on the results page")
    page_num, total = int(header.group(1)), int(header.group(2) or header.group(3))
    rows: list[ResultRow] = []
    fields: dict[str, str] = {}
    for t in page.texts:
        if t.marker == "product-link":
            if fields:
                rows.append(_row(fields))
            fields = {"asin": t.text}
        elif t.marker in ("product-title", "product-price") and fields:
            fields[t.marker] = (fields.get(t.marker, "") + " " + t.text).strip()
    if fields:
        rows.append(_row(fields))
    return page_num, total, rows


def _row(fields: dict[str, str]) -> ResultRow:
    return ResultRow(
        fields["asin"], fields.get("product-title", ""), fields.get("product-price", "")
    )


def read_item(page: ParsedPage) -> tuple[str, str, list[tuple[str, list[str]]]]:
    """(title, price text, option groups in page order) of an item page."""
    groups: dict[str, list[str]] = {}
    for name, value in page.radios:
        groups.setdefault(name, []).append(value)
    title = next((t.text for t in page.texts if t.tag == "h2"), "")
    price = next((t.text for t in page.texts if t.text.lower().startswith("price:")), "")
    if not title:
        raise UnexpectedPageError("no product title (<h2>) on the item page")
    return title, price.split(":", 1)[-1].strip(), list(groups.items())


def read_detail(page: ParsedPage, fallback: str) -> list[str]:
    """The description (one part) or feature bullets (one part each) of a detail page."""
    lines = [t.text for t in page.texts if t.marker == "product-info"]
    return lines or [fallback]


def read_score(page: ParsedPage) -> float:
    texts = [t.text for t in page.texts if t.marker == "reward"]
    for text in reversed(texts):
        if text.lower() != _SCORE_LABEL:
            try:
                return float(text)
            except ValueError:
                continue
    raise UnexpectedPageError("no score under 'Your score (min 0.0, max 1.0)' on the done page")
