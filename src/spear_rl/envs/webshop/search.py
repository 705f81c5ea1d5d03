"""BM25 search over the catalogue (rank-bm25's Okapi BM25, an optional dependency).

WebShop's search engine (Lucene BM25 via pyserini) returns at most 50 products for a query; so does
this one. Results are cached per query because agents (and the oracle) repeat queries a lot.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

# WebShop's SEARCH_RETURN_N: a search shows at most this many products (five pages of ten).
MAX_SEARCH_RESULTS = 50
_QUERY_CACHE_SIZE = 4096
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
# Lucene's English stop words, which WebShop's search engine (pyserini/Lucene) also drops.
_LUCENE_STOP_WORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with"
)
STOP_WORDS = frozenset(_LUCENE_STOP_WORDS.split())


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message says what to install."""


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words; decimals such as "1.7" stay one token."""
    return [t for t in _TOKEN_RE.findall(text.lower()) if t not in STOP_WORDS]


def _bm25_class():
    try:
        from rank_bm25 import BM25Okapi
    except ImportError as err:
        raise MissingDependencyError(
            "the webshop environment needs rank-bm25 for its search engine: "
            "pip install 'spear-rl[webshop]'"
        ) from err
    return BM25Okapi


class SearchIndex:
    """Okapi BM25 (k1=1.5, b=0.75) over one text per product; `search` returns product indices."""

    def __init__(self, documents: Sequence[str], max_results: int = MAX_SEARCH_RESULTS) -> None:
        self._bm25 = _bm25_class()([tokenize(doc) for doc in documents])
        # Inverted index. A word adds to the score of the products that hold it and to no other, so
        # summing rank-bm25's per-word scores (get_batch_scores) over each word's products gives
        # exactly get_scores' numbers while touching far fewer products.
        postings: dict[str, list[int]] = {}
        for doc_id, frequencies in enumerate(self._bm25.doc_freqs):
            for word in frequencies:
                postings.setdefault(word, []).append(doc_id)
        self._postings = {word: (ids, np.asarray(ids)) for word, ids in postings.items()}
        self._num_docs = len(documents)
        self.max_results = max_results
        self._cache: OrderedDict[tuple[str, ...], tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, query: str) -> tuple[int, ...]:
        """Best products first (ties in catalogue order); only products sharing a word with the query."""
        # Words absent from the index score 0 for every product; dropping them changes no score and
        # saves a pass over the corpus per word.
        tokens = tuple(t for t in tokenize(query) if t in self._bm25.idf)
        with self._lock:
            if tokens in self._cache:
                self._cache.move_to_end(tokens)
                return self._cache[tokens]
        result: tuple[int, ...] = ()
        if tokens:
            scores = np.zeros(self._num_docs)
            for token in tokens:  # in query order, repeats included, as get_scores does
                ids, id_array = self._postings[token]
                scores[id_array] += self._bm25.get_batch_scores([token], ids)
            order = np.argsort(-scores, kind="stable")[: self.max_results]
            result = tuple(int(i) for i in order if scores[i] > 0)
        with self._lock:
            self._cache[tokens] = result
            if len(self._cache) > _QUERY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return result
