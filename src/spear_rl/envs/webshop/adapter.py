"""An adapter env ("webshop_http") that drives an original WebShop server over HTTP.

The original WebShop (princeton-nlp/WebShop) runs as a Flask app; this env speaks its URL scheme
(GET requests, standard library only) and renders the pages it returns to the same observation text
and admissible actions as the generated env, so recipes run on both by changing `env.name` and
`env.kwargs.url`:

    /<session>                                              search page (goal of the session)
    /search_results/<session>/<keywords>/<page>             results
    /item_page/<session>/<asin>/<keywords>/<page>/<options> item (options: a dict literal)
    /item_sub_page/<session>/<asin>/<keywords>/<page>/<Description|Features>/<options>
    /done/<session>/<asin>/<options>                        purchase; the page shows the score

Sessions named "fixed_<i>" play goal i. Task seeds map to WebShop's usual split: held-out seeds
(>= EVAL_SEED_OFFSET) to goals [0, 500) (its test goals), training seeds to goals [1500, 12087).
Navigation state (query, page, item, chosen options) is kept here, as the server keeps none, and
moves as in the generated env (navigation.py).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import threading
import time
import urllib.parse

from spear_rl.envs.base import EVAL_SEED_OFFSET, Env, StepResult, register_env
from spear_rl.envs.webshop.actions import Accepted, Rejection, check_action
from spear_rl.envs.webshop.env import DEFAULT_MAX_TURNS, SUCCESS_REWARD, SYSTEM_PROMPT
from spear_rl.envs.webshop.navigation import PageState, next_state
from spear_rl.envs.webshop.pages import (
    DESCRIPTION,
    FEATURES,
    PageView,
    detail_view,
    done_view,
    element_key,
    item_view,
    results_view,
    search_view,
)
from spear_rl.envs.webshop.server_html import (
    UnexpectedPageError,
    parse_html,
    read_detail,
    read_instruction,
    read_item,
    read_results,
    read_score,
)

DEFAULT_TRAIN_GOALS = (1500, 12087)
DEFAULT_EVAL_GOALS = (0, 500)
# WebShop's pages are tens of kB; a page far beyond that is a broken or hostile server
DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024
_SUCCESS_TOLERANCE = 1e-9
# a detail page's part (as PageState.detail names it) -> its name in the server's URLs
_SUB_PAGES = {element_key(DESCRIPTION): DESCRIPTION, element_key(FEATURES): FEATURES}


class WebShopServerError(RuntimeError):
    """The WebShop server could not be reached or answered with something unexpected."""


@register_env("webshop_http")
class WebShopHTTPEnv(Env):
    name = "webshop_http"
    system_prompt = SYSTEM_PROMPT

    def __init__(
        self,
        url: str = "",
        max_turns: int = DEFAULT_MAX_TURNS,
        dense_score: bool = False,
        timeout_s: float = 30.0,
        train_goal_range: tuple[int, int] | list[int] = DEFAULT_TRAIN_GOALS,
        eval_goal_range: tuple[int, int] | list[int] = DEFAULT_EVAL_GOALS,
        max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    ) -> None:
        super().__init__()
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(
                f"webshop_http needs the url of a running WebShop server, e.g. "
                f"env.kwargs.url=http://127.0.0.1:3000 (got {url!r})"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"webshop max_turns must be a positive integer, got {max_turns!r}")
        self.url = url.rstrip("/")
        self.max_turns = max_turns
        self.dense_score = bool(dense_score)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise ValueError(f"webshop_http timeout_s must be a number, got {timeout_s!r}")
        if not 0 < timeout_s < math.inf:
            raise ValueError(f"webshop_http timeout_s must be finite and > 0, got {timeout_s!r}")
        if isinstance(max_page_bytes, bool) or not isinstance(max_page_bytes, int):
            raise ValueError(
                f"webshop_http max_page_bytes must be an integer, got {max_page_bytes!r}"
            )
        if max_page_bytes < 1:
            raise ValueError(f"webshop_http max_page_bytes must be >= 1, got {max_page_bytes!r}")
        self.timeout_s = float(timeout_s)
        self.max_page_bytes = max_page_bytes
        self.train_goal_range = _goal_range(train_goal_range, "train_goal_range")
        self.eval_goal_range = _goal_range(eval_goal_range, "eval_goal_range")
        self.session = ""
        self.nav: PageState[str] = PageState()  # products named by ASIN
        self.view: PageView = search_view("")
        self.valid_actions = 0
        self.last_score: float | None = None
        self._row_ids: list[str] = []  # product ids on the current results page
        self._option_groups: list[tuple[str, list[str]]] = []  # of the current item page

    def goal_index(self, seed: int) -> int:
        """The server goal a task seed plays."""
        start, stop = self.eval_goal_range if seed >= EVAL_SEED_OFFSET else self.train_goal_range
        offset = seed - EVAL_SEED_OFFSET if seed >= EVAL_SEED_OFFSET else seed
        return start + offset % (stop - start)

    # ---- protocol ---------------------------------------------------------------------------
    def _reset(self, seed: int) -> str:
        self.session = f"fixed_{self.goal_index(seed)}"
        self.valid_actions, self.last_score = 0, None
        self.nav = PageState()
        page = parse_html(self._get(self._path(self.session)))
        self.task = self._read(read_instruction, page)
        self.view = search_view(self.task)
        return self.view.text

    def _step_action(self, action: str) -> StepResult:
        if not self.session:
            raise RuntimeError("step() before reset(): call reset(seed) first")
        verdict = check_action(action, self.view)
        if (
            isinstance(verdict, Accepted)
            and verdict.verb == "search"
            and not _keywords(verdict.argument)
        ):
            verdict = Rejection(
                "Invalid action: the query has no words, e.g. search[red rain jacket]."
            )
        if isinstance(verdict, Rejection):
            info = {"valid": False, "tool_call": False, "feedback": verdict.feedback}
            info["webshop_score"] = 0.0
            return StepResult(self.observation, 0.0, False, info)
        self.valid_actions += 1
        nav = next_state(
            self.nav,
            verdict,
            product_named=lambda key: next(a for a in self._row_ids if element_key(a) == key),
            option_groups=lambda asin: self._option_groups,  # of the item page shown now
        )
        self.view = self._fetch_view(nav)  # may raise WebShopServerError: nav stays as it was
        self.nav = nav
        reward, score, done = 0.0, 0.0, False
        if self.nav.kind == "done":
            score, done = float(self.last_score or 0.0), True
            self.won = score >= 1.0 - _SUCCESS_TOLERANCE
            reward = SUCCESS_REWARD * self.won + (score if self.dense_score else 0.0)
        info = {"webshop_score": score, "page": self.nav.kind}
        if not done and self.valid_actions >= self.max_turns:
            done, info["timeout"] = True, True
        return StepResult(self.view.text, reward, done, info)

    @property
    def admissible_actions(self) -> list[str]:
        return [] if self.done else self.view.admissible_actions()

    # ---- pages ------------------------------------------------------------------------------
    def _fetch_view(self, nav: PageState[str]) -> PageView:
        """Request the page `nav` names from the server and render it."""
        keywords = repr(list(_keywords(nav.query)))
        options_text = repr(dict(nav.selected))
        if nav.kind == "search":
            page = parse_html(self._get(self._path(self.session)))
            return search_view(self._read(read_instruction, page))
        if nav.kind == "results":
            path = self._path("search_results", self.session, keywords, str(nav.page_num))
            page_num, total, rows = self._read(read_results, parse_html(self._get(path)))
            self._row_ids = [row.product_id for row in rows]
            return results_view(page_num, total, rows)
        if nav.kind == "item":
            path = self._path(
                "item_page", self.session, nav.product, keywords, str(nav.page_num), options_text
            )
            title, price, groups = self._read(read_item, parse_html(self._get(path)))
            self._option_groups = groups
            return item_view(title, price, groups, dict(nav.selected))
        if nav.kind == "detail":
            path = self._path(
                "item_sub_page",
                self.session,
                nav.product,
                keywords,
                str(nav.page_num),
                _SUB_PAGES[nav.detail],
                options_text,
            )
            lines = read_detail(parse_html(self._get(path)), f"No {_SUB_PAGES[nav.detail]}")
            return detail_view(lines)
        page = parse_html(self._get(self._path("done", self.session, nav.product, options_text)))
        score = self._read(read_score, page)
        if not 0.0 <= score <= 1.0 + _SUCCESS_TOLERANCE:  # also false for NaN
            raise WebShopServerError(
                f"WebShop server {self.url} reported score {score!r} for {nav.product}, outside "
                "[0, 1]; not used as a reward"
            )
        self.last_score = score
        return done_view(nav.product, self.last_score)

    # ---- HTTP -------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)

    def _get(self, path: str) -> str:
        """One GET with a total deadline of `timeout_s` (connect, headers and body together: a
        server that trickles bytes cannot hold the call, or the env's worker thread, any longer),
        at most `max_page_bytes` of body, and no redirects."""
        url = self.url + path
        parts = urllib.parse.urlsplit(self.url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        deadline = time.monotonic() + self.timeout_s
        conn = connection_class(parts.hostname or "", parts.port, timeout=self.timeout_s)
        watchdog: threading.Timer | None = None
        expired = threading.Event()
        try:
            conn.connect()
            # the socket timeout bounds each read; this bounds the whole request
            watchdog = threading.Timer(
                max(0.0, deadline - time.monotonic()), _abort, (conn, expired)
            )
            watchdog.daemon = True
            watchdog.start()
            conn.request("GET", parts.path + path, headers={"Accept": "text/html"})
            response = conn.getresponse()
            if 300 <= response.status < 400:
                raise WebShopServerError(
                    f"WebShop server redirected {url} to {response.getheader('Location')!r}; "
                    "the adapter follows no redirects: set env.kwargs.url to the server itself"
                )
            if response.status != 200:
                raise WebShopServerError(
                    f"WebShop server answered {response.status} for {url}; is it a WebShop server?"
                )
            body = self._read_body(response, url, expired)
        except WebShopServerError:
            raise
        except (http.client.HTTPException, OSError) as err:
            if expired.is_set():
                raise self._too_slow(url) from err
            if isinstance(err, http.client.HTTPException):
                raise WebShopServerError(
                    f"WebShop server sent a broken answer for {url} ({type(err).__name__}: {err})"
                ) from err
            raise WebShopServerError(
                f"cannot reach the WebShop server at {self.url} ({type(err).__name__}: {err}); "
                "start it (see docs/webshop.md) or set env.kwargs.url"
            ) from err
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()
        if expired.is_set():
            raise self._too_slow(url)
        return body.decode("utf-8", errors="replace")

    def _read_body(self, response: http.client.HTTPResponse, url: str, expired) -> bytes:
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_page_bytes:
            raise self._too_big(url, f"declares {int(declared)} bytes")
        chunks, size = [], 0
        while not expired.is_set():
            chunk = response.read1(65536)  # whatever has arrived, so the deadline is checked often
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_page_bytes:
                raise self._too_big(url, f"sent more than {self.max_page_bytes} bytes")
            chunks.append(chunk)
        if expired.is_set():
            raise self._too_slow(url)
        if response.length:  # bytes the server declared but never sent
            raise http.client.IncompleteRead(b"".join(chunks), response.length)
        return b"".join(chunks)

    def _too_slow(self, url: str) -> WebShopServerError:
        return WebShopServerError(
            f"WebShop server gave no complete answer for {url} within "
            f"env.kwargs.timeout_s={self.timeout_s:g}s"
        )

    def _too_big(self, url: str, what: str) -> WebShopServerError:
        return WebShopServerError(
            f"WebShop page {url} {what}, over env.kwargs.max_page_bytes={self.max_page_bytes}"
        )

    def _read(self, reader, *args):
        try:
            return reader(*args)
        except UnexpectedPageError as err:
            raise WebShopServerError(f"unexpected page from {self.url}: {err}") from err


def _abort(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The watchdog: past the deadline, shut the socket so a blocked read returns at once."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def _keywords(query: str) -> tuple[str, ...]:
    """The query as the server's search form sends it: lower case, split on spaces. A "/" would
    break the server's routes, so it becomes a space."""
    return tuple(query.replace("/", " ").lower().split())


def _goal_range(value, name: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"webshop_http {name} must be [start, stop), got {value!r}") from None
    if not 0 <= start < stop:
        raise ValueError(f"webshop_http {name} must satisfy 0 <= start < stop, got {value!r}")
    return start, stop
