"""A stand-in for the original WebShop server: the same URL scheme and page shapes (element ids,
classes, radio inputs, even its mis-closed headings), served from the generated catalogue.

It exists to test the "webshop_http" adapter without the real server (which needs Python <= 3.10,
Java and data files that cannot be installed here), and to let a user try the adapter:

    python -m spear_rl.envs.webshop.standin_server --port 3000
    # then env.name=webshop_http env.kwargs.url=http://127.0.0.1:3000

Session "fixed_<i>" plays the generated goal of task seed i. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import html
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from spear_rl.envs.webshop.catalogue import DEFAULT_NUM_PRODUCTS, Catalogue, build_catalogue
from spear_rl.envs.webshop.instructions import Goal, make_goal
from spear_rl.envs.webshop.pages import RESULTS_PER_PAGE
from spear_rl.envs.webshop.reward import score_purchase

_e = html.escape


def _page(body: str) -> str:
    return f"<!DOCTYPE html>\n<html><head><title>WebShop</title></head><body>{body}</body></html>"


def _instruction_block(goal: Goal, keywords: str) -> str:
    return (
        '<div id="instruction-text">'
        f"<h4>Instruction: {_e(goal.instruction)}</h4><h4>Current Query: {_e(keywords)}</h4></div>"
    )


def search_page(goal: Goal) -> str:
    return _page(
        '<div id="logo"><h2>WebShop</h2></div>'
        f'<div id="instruction-text"><h4>Instruction: <br>{_e(goal.instruction)}</h4></div>'
        '<form method="post"><input id="search_input" type="text" name="search_query">'
        '<button type="submit">Search</button></form>'
    )


def results_page(catalogue: Catalogue, goal: Goal, keywords: list[str], page: int) -> str:
    results = catalogue.search(" ".join(keywords))
    start = (page - 1) * RESULTS_PER_PAGE
    shown = results[start : start + RESULTS_PER_PAGE]
    buttons = '<form method="post"><button type="submit">Back to Search</button></form>'
    if page > 1:
        buttons += '<form method="post"><button type="submit">&lt; Prev</button></form>'
    if page * RESULTS_PER_PAGE < len(results):
        buttons += '<form method="post"><button type="submit">Next &gt;</button></form>'
    items = ""
    for index in shown:
        p = catalogue.products[index]
        # WebShop's template closes these headings with the wrong tags; so do we.
        items += (
            '<div class="grid-item"><img src="" class="result-img">'
            f'<h4 class="product-asin"><a class="product-link" href="#">{_e(p.product_id)}</a></h4>'
            f'<h4 class="product-title">{_e(p.title)}</h5>'
            f'<div class="d-flex"><h5 class="product-price">{_e(p.price_text)}</h6></div></div>'
        )
    header = (
        f"<h1>Results</h1><p>Page {page} ({start + 1}-{page * RESULTS_PER_PAGE}) of "
        f"{len(results)} total results</p>"
    )
    body = _instruction_block(goal, " ".join(keywords)) + header + buttons
    return _page(body + f'<div class="grid-container">{items}</div>')


def item_page(catalogue: Catalogue, goal: Goal, asin: str, options: dict) -> str:
    p = catalogue.find(asin)
    assert p is not None
    groups = ""
    for group, values in p.options:
        radios = "".join(
            f'<input type="radio" id="radio_{_e(group)}{i}" name="{_e(group)}" value="{_e(v)}">'
            f'<label for="radio_{_e(group)}{i}">{_e(v)}</label>'
            for i, v in enumerate(values)
        )
        groups += (
            f'<div class="row"><h4>{_e(group)}</h4><div class="radio-toolbar">{radios}</div></div>'
        )
    buttons = "".join(
        f'<form method="post"><button type="submit">{name}</button></form>'
        for name in ("Description", "Features", "Reviews", "Buy Now")
    )
    script = f"<script>let options = JSON.parse(`{_e(repr(options))}`);</script>"
    return _page(
        _instruction_block(goal, "")
        + '<form><button type="submit">Back to Search</button></form>'
        + '<form><button type="submit">&lt; Back to Results</button></form>'
        + groups
        + f"<h2>{_e(p.title)}</h2><h4>Price: {_e(p.price_text)}</h4><h4>Rating: N.A.</h4>"
        + buttons
        + script
    )


def sub_page(catalogue: Catalogue, goal: Goal, asin: str, which: str) -> str:
    p = catalogue.find(asin)
    assert p is not None
    if which == "Description":
        content = f'<p class="product-info">{_e(p.description)}</p>'
    else:
        bullets = "".join(f'<li><p class="product-info"> {_e(f)}</p></li>' for f in p.features)
        content = f"<ul>{bullets}</ul>"
    return _page(
        _instruction_block(goal, "")
        + '<form><button type="submit">Back to Search</button></form>'
        + '<form><button type="submit">&lt; Back to Item Page</button></form>'
        + f'<div class="card card-body">{content}</div>'
    )


def done_page(catalogue: Catalogue, goal: Goal, asin: str, options: dict) -> str:
    p = catalogue.find(asin)
    assert p is not None
    score = score_purchase(p, goal, options).score
    return _page(
        '<div id="thankyou"><h1>Thank you for shopping with us!</h1></div>'
        '<div id="stats"><h3>Your code: </h3><p><pre>none</pre> (Paste it in your MTurk interface.)</p>'
        f'<div style="display:none"><h4 id="asin">asin<pre>{_e(p.product_id)}</pre></p>'
        f'<h4 id="goal-price">price upper<pre>{goal.price_upper}</pre></h4></div>'
        f'<h3 id="reward">Your score (min 0.0, max 1.0)<pre>{score}</pre></h3>'
        "<h4 hidden>Reward Details</h4></div>"
    )


def make_handler(catalogue: Catalogue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.path.split("?", 1)[0]
            parts = [urllib.parse.unquote(part) for part in raw.strip("/").split("/")]
            try:
                body = self._route(parts)
            except (KeyError, ValueError, SyntaxError, AssertionError, IndexError):
                body = None
            if body is None:
                self.send_error(404, "not a WebShop page")
                return
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, parts: list[str]) -> str | None:
            goal = _session_goal(catalogue, parts[0] if len(parts) == 1 else parts[1])
            if goal is None:
                return None
            if len(parts) == 1:
                return search_page(goal)
            kind, args = parts[0], parts[2:]
            if kind == "search_results" and len(args) == 2:
                return results_page(catalogue, goal, _keywords(args[0]), int(args[1]))
            if kind == "item_page" and len(args) == 4:
                return item_page(catalogue, goal, args[0], ast.literal_eval(args[3]))
            if kind == "item_sub_page" and len(args) == 5:
                return sub_page(catalogue, goal, args[0], args[3])
            if kind == "done" and len(args) == 2:
                return done_page(catalogue, goal, args[0], ast.literal_eval(args[1]))
            return None

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - silence request logs
            pass

    return Handler


def _session_goal(catalogue: Catalogue, session: str) -> Goal | None:
    if not session.startswith("fixed_"):
        return None
    return make_goal(catalogue, int(session.removeprefix("fixed_")))


def _keywords(text: str) -> list[str]:
    # Like WebShop: a list literal (what its search form produces) or one plain string.
    return list(ast.literal_eval(text)) if text.startswith("[") else [text]


def start_standin_server(
    catalogue_seed: int = 0,
    num_products: int = DEFAULT_NUM_PRODUCTS,
    host: str = "127.0.0.1",
    port: int = 0,
) -> tuple[ThreadingHTTPServer, str]:
    """Serve in a daemon thread; returns (server, base url). Stop with server.shutdown()."""
    catalogue = build_catalogue(catalogue_seed, num_products)
    server = ThreadingHTTPServer((host, port), make_handler(catalogue))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="webshop-standin").start()
    return server, f"http://{host}:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--catalogue-seed", type=int, default=0)
    parser.add_argument("--num-products", type=int, default=DEFAULT_NUM_PRODUCTS)
    args = parser.parse_args()
    catalogue = build_catalogue(args.catalogue_seed, args.num_products)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(catalogue))
    print(f"WebShop stand-in serving {len(catalogue)} products at http://{args.host}:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
