"""The "webshop_http" adapter against a stand-in WebShop server on 127.0.0.1 (the real server cannot
be installed here). The stand-in serves WebShop-shaped HTML from the generated catalogue, so the
adapter must reproduce the generated env's observations, admissible actions and rewards exactly."""

from __future__ import annotations

import random
import re
import socket
import threading
import time

import pytest

from spear_rl.envs.base import EVAL_SEED_OFFSET, make_env
from spear_rl.envs.webshop.adapter import WebShopHTTPEnv, WebShopServerError
from spear_rl.envs.webshop.server_html import parse_html, read_item, read_results, read_score
from spear_rl.envs.webshop.standin_server import start_standin_server

NUM_PRODUCTS = 300
# Goal i of the stand-in is task seed i of the generated env.
SAME_GOALS = {
    "train_goal_range": (0, EVAL_SEED_OFFSET),
    "eval_goal_range": (EVAL_SEED_OFFSET, 2 * EVAL_SEED_OFFSET),
}


@pytest.fixture(scope="module")
def server_url():
    server, url = start_standin_server(catalogue_seed=0, num_products=NUM_PRODUCTS)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture()
def pair(server_url):
    native = make_env("webshop", num_products=NUM_PRODUCTS)
    remote = make_env("webshop_http", url=server_url, **SAME_GOALS)
    return native, remote


def act(env, action: str):
    return env.step(env.format_action(action))


def assert_same_step(native, remote, action: str):
    a, b = act(native, action), act(remote, action)
    assert b.observation == a.observation, action
    assert (b.reward, b.done, b.info["valid"]) == (a.reward, a.done, a.info["valid"]), action
    assert b.info.get("webshop_score") == pytest.approx(a.info.get("webshop_score"))
    assert remote.admissible_actions == native.admissible_actions
    return b


@pytest.mark.parametrize("seed", [0, 1, 2, EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 7])
def test_oracle_episode_reset_search_click_buy(pair, seed):
    native, remote = pair
    assert remote.reset(seed) == native.reset(seed)
    assert remote.task == native.task and remote.admissible_actions == ["search[<your query>]"]
    while not native.done:
        result = assert_same_step(native, remote, native.expert_action())
    assert result.done and result.reward == 10.0 and result.info["won"]
    assert result.info["webshop_score"] == 1.0


def test_partial_purchase_reward_is_read_from_the_done_page(pair):
    native, remote = pair
    native.reset(4), remote.reset(4)
    assert_same_step(native, remote, "search[" + native.task + "]")
    assert_same_step(native, remote, native.admissible_actions[-1])  # last product on the page
    result = assert_same_step(native, remote, "click[buy now]")
    assert result.info["webshop_score"] == pytest.approx(native.last_score.score)
    assert native.last_score.score < 1.0
    assert not remote.won


def test_detail_pages_options_and_navigation(pair):
    native, remote = pair
    native.reset(9), remote.reset(9)
    assert_same_step(native, remote, "search[black]")
    assert_same_step(native, remote, "click[next >]")
    assert_same_step(native, remote, "click[< prev]")
    assert_same_step(native, remote, native.admissible_actions[3])
    values = [a for a in native.admissible_actions if a not in
              ("click[back to search]", "click[< prev]", "click[description]", "click[features]",
               "click[buy now]")]  # fmt: skip
    for action in values[:2] + ["click[features]", "click[< prev]", "click[description]"]:
        assert_same_step(native, remote, action)
    for action in ("click[< prev]", "click[< prev]", "click[back to search]"):
        assert_same_step(native, remote, action)
    assert remote.observation.startswith("WebShop [SEP] Instruction:")


def test_random_walks_match_the_generated_env(pair):
    native, remote = pair
    rng = random.Random(1)
    for episode in range(6):
        native.reset(100 + episode), remote.reset(100 + episode)
        while not native.done:
            action = rng.choice(native.admissible_actions)
            if action.startswith("search["):
                action = f"search[{rng.choice([native.task, 'red', 'usb c charger'])}]"
            assert_same_step(native, remote, action)


def test_hostile_actions_never_reach_the_server(pair):
    _, remote = pair
    obs = remote.reset(0)
    remote.url = "http://127.0.0.1:9"  # any request would now fail loudly
    for action in (
        "click[nothing]",
        "click[buy now]",
        "search[]",
        "search[///]",
        "click[x",
        "hack[me]",
    ):
        result = act(remote, action)
        assert result.info["valid"] is False and result.observation == obs
        assert result.info["feedback"].startswith("Invalid action")
    result = remote.step("<action>search[" + "a" * 100_000 + "]</action>")
    assert result.info["valid"] is False and remote.valid_actions == 0


def test_queries_with_slashes_and_quotes_reach_the_server(pair):
    native, remote = pair
    native.reset(2), remote.reset(2)
    for query in ("usb c/hdmi cable", 'kid\'s "red" sandals', "100% [cotton]"):
        assert_same_step(native, remote, f"search[{query}]")
        assert_same_step(native, remote, "click[back to search]")


def test_server_error_mid_episode_leaves_the_page_unchanged(pair):
    _, remote = pair
    remote.reset(0)
    remote.url = "http://127.0.0.1:9"
    with pytest.raises(WebShopServerError):
        act(remote, "search[red]")
    assert remote.nav.kind == "search"


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    env = WebShopHTTPEnv(url=f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(WebShopServerError, match="cannot reach the WebShop server"):
        env.reset(0)


def test_wrong_server_path_is_a_clear_error(server_url):
    env = WebShopHTTPEnv(url=server_url + "/not-webshop")
    with pytest.raises(WebShopServerError, match="answered 404"):
        env.reset(0)


def test_constructor_validates_kwargs():
    with pytest.raises(ValueError, match="env.kwargs.url"):
        WebShopHTTPEnv(url="")
    with pytest.raises(ValueError, match="train_goal_range"):
        WebShopHTTPEnv(url="http://x", train_goal_range=(5, 5))
    with pytest.raises(ValueError, match="eval_goal_range"):
        WebShopHTTPEnv(url="http://x", eval_goal_range="abc")


def test_seeds_map_to_webshops_usual_goal_split():
    env = WebShopHTTPEnv(url="http://127.0.0.1:3000")
    assert env.goal_index(0) == 1500 and env.goal_index(10_586) == 12_086
    assert env.goal_index(10_587) == 1500
    assert env.goal_index(EVAL_SEED_OFFSET) == 0 and env.goal_index(EVAL_SEED_OFFSET + 499) == 499
    assert env.goal_index(EVAL_SEED_OFFSET + 500) == 0


def test_html_reader_on_webshop_shaped_snippets():
    results = parse_html(
        '<div id="instruction-text"><h4>Instruction: buy x</h4></div>'
        "<p>Page 2 (11-20) of 31 total results</p>"
        '<h4 class="product-asin"><a class="product-link" href="#">B0X</a></h4>'
        '<h4 class="product-title">Tea &amp; Honey</h5><h5 class="product-price">$3.50</h6>'
        '<h4 class="product-asin"><a class="product-link" href="#">B0Y</a></h4>'
        '<h4 class="product-title">Mug</h5><h5 class="product-price">$9.00 to $12.00</h6>'
    )
    page_num, total, rows = read_results(results)
    assert (page_num, total) == (2, 31)
    assert [(r.product_id, r.title, r.price_text) for r in rows] == [
        ("B0X", "Tea & Honey", "$3.50"),
        ("B0Y", "Mug", "$9.00 to $12.00"),
    ]
    item = parse_html(
        '<h4>size</h4><input type="radio" name="size" value="small"><label>small</label>'
        '<input type="radio" name="size" value="large"><label>large</label>'
        '<h4>color</h4><input type="radio" name="color" value="red"><label>red</label>'
        "<h2>Big Mug</h2><h4>Price: $9.00</h4><script>var x = '<h2>no</h2>';</script>"
    )
    assert read_item(item) == (
        "Big Mug",
        "$9.00",
        [("size", ["small", "large"]), ("color", ["red"])],
    )
    done = parse_html(
        '<h3 id="reward">Your score (min 0.0, max 1.0)<pre>0.6666666666666666</pre></h3>'
    )
    assert read_score(done) == pytest.approx(2 / 3)


# ---- misbehaving servers (issue 33): each is a loopback server whose loops end by themselves ----
class RawServer:
    """A loopback TCP server that answers every connection with `reply(conn)` in a daemon thread.
    `reply` loops are bounded, and a closed client ends them early."""

    def __init__(self, reply) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request
                self.reply(conn)
            except OSError:
                pass  # the client gave up: that is what these tests want

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture()
def raw_server():
    servers = []

    def start(reply) -> RawServer:
        servers.append(RawServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def trickle(data: bytes, gap_s: float = 0.05):
    def reply(conn: socket.socket) -> None:
        for i in range(len(data)):  # at most len(data) * gap_s seconds
            conn.sendall(data[i : i + 1])
            time.sleep(gap_s)

    return reply


HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n"


@pytest.mark.parametrize(
    "where", ["status line", "body"], ids=["trickled-headers", "trickled-body"]
)
def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(raw_server, where):
    # 1200 bytes at 20 a second would take a minute; the deadline is 1 s for the whole request
    data = (HEADERS if where == "body" else b"") + b"x" * 1200
    server = raw_server(trickle(data if where == "body" else b"HTTP/1.1 200 OK\r\n" + data))
    env = WebShopHTTPEnv(url=server.url, timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(WebShopServerError, match=r"no complete answer .*timeout_s=1s"):
        env.reset(0)
    assert time.monotonic() - t0 < 10


def test_stuck_calls_free_the_shared_env_workers(raw_server, server_url):
    """Four calls to a trickling server used to occupy every worker of the env timeout pool for
    as long as the server kept sending, so a healthy server's call behind them timed out too."""
    from spear_rl.envs.base import EnvTimeoutError, call_with_timeout

    slow = raw_server(trickle(b"HTTP/1.1 200 OK\r\n" + b"x" * 1200))
    for _ in range(4):
        env = WebShopHTTPEnv(url=slow.url, timeout_s=1)
        with pytest.raises(EnvTimeoutError):
            call_with_timeout(env.reset, 0, timeout_s=0.2)
    healthy = WebShopHTTPEnv(url=server_url, **SAME_GOALS)
    observation = call_with_timeout(healthy.reset, 0, timeout_s=20)
    assert observation.startswith("WebShop [SEP] Instruction:")


def test_an_oversized_page_is_refused(raw_server):
    declared = raw_server(
        lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n")
    )
    env = WebShopHTTPEnv(url=declared.url, max_page_bytes=65536)
    with pytest.raises(WebShopServerError, match="declares 300000000 bytes.*max_page_bytes=65536"):
        env.reset(0)

    def stream(conn: socket.socket) -> None:  # no length: ends when the connection closes
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n")
        for _ in range(64):  # 4 MiB at most
            conn.sendall(b"<p>" + b"a" * 65533)

    undeclared = raw_server(stream)
    env = WebShopHTTPEnv(url=undeclared.url, max_page_bytes=65536)
    with pytest.raises(WebShopServerError, match="more than 65536 bytes"):
        env.reset(0)


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"garbage\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<p>short", "IncompleteRead"),
        (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/\r\n\r\n", "redirected .*:9/"),
    ],
    ids=["bad-status-line", "incomplete-read", "redirect"],
)
def test_broken_answers_are_wrapped(raw_server, answer, message):
    server = raw_server(lambda conn: conn.sendall(answer))
    env = WebShopHTTPEnv(url=server.url, timeout_s=5)
    with pytest.raises(WebShopServerError, match=message):
        env.reset(0)


@pytest.mark.parametrize("score", ["1e308", "-5", "nan", "inf", "1.5"])
def test_an_out_of_range_score_never_becomes_a_reward(score):
    from http.server import ThreadingHTTPServer

    from spear_rl.envs.webshop.catalogue import build_catalogue
    from spear_rl.envs.webshop.standin_server import make_handler

    class BadScore(make_handler(build_catalogue(0, NUM_PRODUCTS))):
        def _route(self, parts):
            if parts[0] == "done":
                return f'<h3 id="reward">Your score (min 0.0, max 1.0)<pre>{score}</pre></h3>'
            return super()._route(parts)

    server = ThreadingHTTPServer(("127.0.0.1", 0), BadScore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        native = make_env("webshop", num_products=NUM_PRODUCTS)
        remote = WebShopHTTPEnv(url=f"http://127.0.0.1:{server.server_address[1]}", **SAME_GOALS)
        native.reset(3), remote.reset(3)
        while True:
            action = native.expert_action()
            if action == "click[buy now]":
                break
            assert_same_step(native, remote, action)
        with pytest.raises(
            WebShopServerError, match=re.escape(f"score {float(score)!r} for ") + ".*outside"
        ):
            act(remote, action)
        assert remote.last_score is None and not remote.done
    finally:
        server.shutdown()
        server.server_close()


def test_timeout_and_page_cap_are_validated():
    for bad in (0, -1, float("nan"), float("inf"), "3"):
        with pytest.raises(ValueError, match="timeout_s"):
            WebShopHTTPEnv(url="http://x", timeout_s=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="max_page_bytes"):
            WebShopHTTPEnv(url="http://x", max_page_bytes=bad)
