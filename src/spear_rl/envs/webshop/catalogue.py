"""The generated product catalogue: thousands of products, a pure function of a seed, built once per
process.

Each product has an id in Amazon's ASIN shape, a title, a product type (with its department and
aisle), attributes, option groups with values, a price, a description and feature bullets. One in ten
products (chosen by the seed) is reserved as a target for held-out instructions; the rest are
targets for training instructions. All products are in the store for both.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from spear_rl.envs.webshop.search import SearchIndex
from spear_rl.envs.webshop.vocabulary import (
    BRANDS,
    DEPARTMENT_BLURBS,
    DESCRIPTORS,
    GENERIC_FEATURES,
    PRODUCT_TYPES,
    ProductType,
)

DEFAULT_NUM_PRODUCTS = 5_000
# Share of products that are targets of held-out (evaluation) instructions only.
EVAL_TARGET_FRACTION = 0.1
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_TITLE_TRIES = 50
_EXHAUSTED = "webshop catalogue ran out of unique titles or ids; lower num_products"


@dataclass(frozen=True)
class Product:
    index: int
    product_id: str  # e.g. "B07K3M9QZT"
    title: str
    product_type: str
    department: str
    aisle: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (group, values) in display order
    price: float
    description: str
    features: tuple[str, ...]

    @property
    def price_text(self) -> str:
        return f"${self.price:.2f}"

    @property
    def text(self) -> str:
        """Title, description and features in lower case (where attributes are also looked up)."""
        return " ".join([self.title, self.description, *self.features]).lower()


@dataclass
class Catalogue:
    seed: int
    products: tuple[Product, ...]
    train_targets: tuple[int, ...]  # product indices that training instructions are built from
    eval_targets: tuple[int, ...]  # product indices that held-out instructions are built from
    _by_id: dict[str, int] = field(default_factory=dict, repr=False)
    _index: SearchIndex | None = field(default=None, repr=False)
    _index_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {p.product_id.lower(): p.index for p in self.products}

    def __len__(self) -> int:
        return len(self.products)

    def find(self, product_id: str) -> Product | None:
        index = self._by_id.get(product_id.strip().lower())
        return None if index is None else self.products[index]

    def search(self, query: str) -> tuple[int, ...]:
        """Indices of the best matching products for a free-text query (BM25, at most 50)."""
        return self.search_index.search(query)

    @property
    def search_index(self) -> SearchIndex:
        # Built on first search (rank-bm25 is an optional dependency), once, even across threads.
        with self._index_lock:
            if self._index is None:
                self._index = SearchIndex([_search_document(p) for p in self.products])
            return self._index


def _search_document(product: Product) -> str:
    values = [v for _, group_values in product.options for v in group_values]
    return " ".join(
        [product.product_id, product.title, product.description, *product.features, *values]
    )


@functools.lru_cache(maxsize=4)
def build_catalogue(seed: int = 0, num_products: int = DEFAULT_NUM_PRODUCTS) -> Catalogue:
    """The catalogue for `seed`: deterministic, cached per process (~0.1 s for 5000 products)."""
    if num_products < 2:
        raise ValueError(f"webshop num_products must be at least 2, got {num_products}")
    rng = random.Random(f"webshop-catalogue:{seed}")
    used_ids: set[str] = set()
    used_titles: set[str] = set()
    products = []
    for index in range(num_products):
        # Round-robin over types so every type has about the same number of products.
        product_type = PRODUCT_TYPES[index % len(PRODUCT_TYPES)]
        products.append(_make_product(index, product_type, rng, used_ids, used_titles))
    split_rng = random.Random(f"webshop-split:{seed}")
    num_eval = max(1, round(EVAL_TARGET_FRACTION * num_products))
    eval_targets = tuple(sorted(split_rng.sample(range(num_products), num_eval)))
    eval_set = set(eval_targets)
    train_targets = tuple(i for i in range(num_products) if i not in eval_set)
    return Catalogue(seed, tuple(products), train_targets, eval_targets)


def _make_product(
    index: int,
    product_type: ProductType,
    rng: random.Random,
    used_ids: set[str],
    used_titles: set[str],
) -> Product:
    for _ in range(_MAX_TITLE_TRIES):
        product_id = "B0" + "".join(rng.choices(_ID_ALPHABET, k=8))
        if product_id not in used_ids:
            used_ids.add(product_id)
            break
    else:
        raise RuntimeError(_EXHAUSTED)
    attributes = tuple(rng.sample(product_type.attributes, rng.randint(3, 5)))
    options = tuple((group, _sample_in_order(pool, rng)) for group, pool in product_type.options)
    low, high = product_type.price_range
    price = round(rng.uniform(low, high), 2)
    for _ in range(_MAX_TITLE_TRIES):
        brand, descriptor = rng.choice(BRANDS), rng.choice(DESCRIPTORS)
        shown = ", ".join(_title_case(a) for a in attributes[: rng.randint(1, 2)])
        title = f"{brand} {descriptor} {_title_case(product_type.name)}, {shown}"
        if title not in used_titles:
            used_titles.add(title)
            break
    else:
        raise RuntimeError(_EXHAUSTED)
    description = (
        f"The {descriptor.lower()} {product_type.name} by {brand} "
        f"{'are' if is_plural(product_type.name) else 'is'} {_and_list(attributes)}. "
        f"{DEPARTMENT_BLURBS[product_type.department]}"
    )
    features = tuple(_title_case(a) for a in attributes) + tuple(rng.sample(GENERIC_FEATURES, 2))
    return Product(
        index=index,
        product_id=product_id,
        title=title,
        product_type=product_type.name,
        department=product_type.department,
        aisle=product_type.aisle,
        attributes=attributes,
        options=options,
        price=price,
        description=description,
        features=features,
    )


def is_plural(type_name: str) -> bool:
    """Whether a product type name is a plural noun ("running shoes", not "summer dress")."""
    return type_name.endswith("s") and not type_name.endswith("ss")


def _sample_in_order(pool: Sequence[str], rng: random.Random) -> tuple[str, ...]:
    """2 to 5 values of the pool (all of a smaller pool), kept in the pool's order."""
    if len(pool) <= 2:
        return tuple(pool)
    chosen = set(rng.sample(pool, rng.randint(2, min(5, len(pool)))))
    return tuple(v for v in pool if v in chosen)


def _title_case(text: str) -> str:
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def _and_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
