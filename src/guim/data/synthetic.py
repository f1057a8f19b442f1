"""The synthetic shop: a seeded, vectorised generator of a realistic shop log with known truth.

Users with a few latent interests (leaf categories) browse in sessions focused on one interest,
moving on to the same leaf, a related item or a complementary leaf; items have Zipf popularity;
views turn into likes, carts and purchases more often when user and item match. The output is
MerRec-compatible Parquet shards (read them with `guim.data.loaders.merrec.load_merrec`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from guim.data.loaders.merrec import MERREC_COLUMNS, MERREC_EVENTS
from guim.errors import UserError
from guim.io import atomic_dir, read_json, write_json
from guim.progress import make_progress

# Bumped whenever the same config starts giving different data (cached shops compare it).
VERSION = 2  # 2: repeat behaviour made explicit (redraw_repeats, p_revisit)
# Event codes in this module index MERREC_EVENTS (funnel order: view, like, cart, offer,
# buy_start, buy_comp). Where each falls between its view and the next view (fraction of the gap):
_FUNNEL_OFFSET = np.array([0.0, 0.15, 0.3, 0.45, 0.6, 0.8])

# c0 -> c1 -> c2 (singular nouns, used in titles). Larger trees cycle with a numeric suffix.
_TAXONOMY_TEXT = """
Women: Tops=T-shirt|Blouse|Tank top|Sweater|Cardigan|Hoodie; Dresses=Maxi dress|Mini dress|Midi dress|Wrap dress|Sundress|Cocktail dress; Shoes=Sneaker|Heel|Ballet flat|Ankle boot|Sandal|Loafer; Bags=Tote bag|Crossbody bag|Clutch|Backpack|Wallet|Shoulder bag; Jewelry=Necklace|Earrings|Bracelet|Ring|Anklet|Brooch
Men: Shirts=Dress shirt|Polo shirt|Flannel shirt|Henley|Graphic tee|Oxford shirt; Pants=Jeans|Chinos|Cargo pants|Joggers|Shorts|Dress pants; Outerwear=Parka|Bomber jacket|Denim jacket|Raincoat|Blazer|Vest; Footwear=Running shoe|Boot|Oxford shoe|Slide|High-top sneaker|Moccasin; Accessories=Watch|Belt|Tie|Sunglasses|Cap|Beanie
Electronics: Phones=Smartphone|Phone case|Screen protector|Charger|Power bank|Phone mount; Audio=Headphones|Earbuds|Bluetooth speaker|Soundbar|Turntable|Microphone; Computers=Laptop|Tablet|Keyboard|Mouse|Monitor|External drive; Gaming=Game console|Controller|Video game|Gaming headset|Gaming chair|Handheld console; Cameras=Digital camera|Camera lens|Tripod|Action camera|Memory card|Camera bag
Home: Kitchen=Coffee maker|Blender|Knife set|Cookware set|Mug|Cutting board; Decor=Vase|Picture frame|Wall art|Candle|Throw pillow|Mirror; Bedding=Duvet cover|Sheet set|Comforter|Pillowcase|Blanket|Mattress topper; Storage=Storage bin|Shelf|Basket|Drawer organizer|Jewelry box|Shoe rack; Lighting=Table lamp|Floor lamp|String lights|Pendant light|Desk lamp|Night light
Beauty: Makeup=Lipstick|Foundation|Mascara|Eyeshadow palette|Blush|Concealer; Skincare=Moisturizer|Serum|Cleanser|Sunscreen|Face mask|Toner; Fragrance=Perfume|Cologne|Body mist|Perfume oil|Fragrance set|Rollerball; Hair care=Shampoo|Conditioner|Hair dryer|Flat iron|Hair oil|Curling iron; Nails=Nail polish|Gel kit|Nail file|Press-on nails|Nail lamp|Cuticle oil
Kids: Baby=Onesie|Stroller|Baby carrier|Bib|Swaddle|Crib sheet; Toys=Building set|Doll|Plush toy|Puzzle|Toy car|Board game; Kids clothing=Kids jacket|Kids pajamas|Kids sneaker|Kids dress|Kids hoodie|Kids jeans; School=Kids backpack|Lunch box|Pencil case|Water bottle|Notebook|Art set; Outdoor play=Scooter|Kids bike|Sandbox toy|Water gun|Kite|Jump rope
Sports: Fitness=Yoga mat|Dumbbell|Resistance band|Kettlebell|Weighted vest|Foam roller; Cycling=Road bike|Bike helmet|Bike light|Cycling jersey|Bike lock|Saddle; Camping=Tent|Sleeping bag|Camping stove|Lantern|Hiking backpack|Camp chair; Team sports=Basketball|Soccer ball|Baseball glove|Football|Volleyball|Shin guards; Running=Running shorts|Running jacket|Sports watch|Running socks|Hydration vest|Armband
Collectibles: Trading cards=Pokemon card|Baseball card|Card binder|Booster pack|Graded card|Card sleeve; Figures=Action figure|Anime figure|Vinyl figure|Model kit|Statue|Bobblehead; Books=Novel|Comic book|Manga|Cookbook|Art book|Vinyl record; Vintage=Vintage camera|Vintage watch|Vintage poster|Coin|Stamp|Vintage toy; Crafts=Yarn|Fabric bundle|Sewing kit|Sticker pack|Bead set|Paint set
"""
TAXONOMY: dict[str, dict[str, list[str]]] = {
    c0.strip(): {c1.split("=")[0].strip(): c1.split("=")[1].split("|") for c1 in rest.split(";")}
    for c0, rest in (line.split(":", 1) for line in _TAXONOMY_TEXT.strip().splitlines())
}
_SIZED_C0 = {"Women", "Men", "Kids"}  # top categories whose items carry a clothing size
SIZES = ("XS", "S", "M", "L", "XL")
COLORS = (
    "black", "white", "gray", "navy", "blue", "red", "pink", "green",
    "beige", "brown", "yellow", "purple", "orange", "silver", "gold",
)  # fmt: skip
ADJECTIVES = (
    "classic", "vintage", "slim", "oversized", "mini", "pro", "deluxe", "organic", "wireless",
    "handmade", "limited edition", "premium", "compact", "lightweight", "retro", "essential",
)  # fmt: skip
_SYLLABLES = (
    "ac", "me", "no", "va", "zen", "lu", "ko", "ra", "ti", "mo", "bel", "cor", "den", "fa", "gro",
    "hal", "ix", "jo", "kel", "lan", "mar", "nel", "or", "pel", "qui", "ros", "sol", "tor", "ul",
    "ver", "wen", "yor", "zel", "dra", "pin", "sa",
)  # fmt: skip
# item_condition_id 1 (new) .. 5 (poor): share of listings and price factor
_CONDITION_P = np.array([0.3, 0.25, 0.25, 0.15, 0.05])
_CONDITION_PRICE = np.array([1.0, 0.9, 0.8, 0.65, 0.5])


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic shop; the same config and seed give the same bytes."""

    seed: int = 0
    n_users: int = 3000
    n_items: int = 8000
    events_per_user: float = 33.0  # mean raw events per user (views + funnel events)
    sessions_per_user: float = 5.0  # mean; a user's activity level scales it (log-normal)
    max_session_views: int = 40
    interests_per_user: tuple[int, int] = (1, 4)  # inclusive range of planted leaf interests
    zipf_exponent: float = 1.1  # item popularity within a leaf: weight 1 / (rank + 1) ** s
    category_tree: tuple[int, int, int] = (8, 5, 6)  # c0 count, c1 per c0, c2 per c1
    n_styles: int = 4  # latent item clusters within a leaf; each user prefers one style
    n_brands: int = 200  # each tied to one top category
    n_shops: int = 500  # sellers, each tied to one top category (MerRec column shipper_id)
    items_per_product: float = 2.0  # listings of one catalogue product (MerRec product_id)
    no_brand_rate: float = 0.15
    # within-session moves from the previous item; the rest returns to the session's interest
    p_related: float = 0.15  # the previous item's related item (a directed item-item link)
    p_same_leaf: float = 0.4  # another item of the previous item's leaf
    p_complement: float = 0.15  # an item of the previous leaf's complementary leaf (directed)
    p_explore: float = 0.05  # an item of a random leaf (by leaf popularity)
    style_strength: float = 0.7  # chance that a draw prefers the user's style
    # Repeat behaviour, set deliberately: a view that happens to draw an item the user viewed
    # before is redrawn (up to three times) (popular items of a user's few leaves would otherwise come back by
    # chance in a third of next views), then a view returns to one of the user's recent items
    # with probability p_revisit (going back to compare, re-finding a favourite). The defaults
    # give about a quarter of leave-one-out targets repeating a history item, the rate RepeatNet
    # (Ren et al., AAAI 2019) reports for e-commerce click logs (about 25% on YOOCHOOSE, 20% on
    # DIGINETICA).
    redraw_repeats: bool = True
    p_revisit: float = 0.15
    revisit_recency: float = 0.25  # a revisit goes back 2 + Geometric(revisit_recency) - 1 views
    # funnel rates per view, averaged over views; each view's rate scales with affinity
    like_rate: float = 0.08
    cart_rate: float = 0.06
    offer_rate: float = 0.02
    direct_buy_rate: float = 0.01  # buy_start without cart or offer
    buy_start_rate: float = 0.5  # of carted or offered items
    purchase_rate: float = 0.7  # buy_start -> buy_comp
    cart_without_view_rate: float = 0.05  # carted straight from a list, no item_view logged
    affinity_strength: float = 1.0  # 0: funnel independent of user-item match
    start: str = "2023-05-01"  # UTC date of the first possible event
    days: int = 180
    shard_events: int = 1_000_000  # approximate events per Parquet shard (= per user chunk)

    def __post_init__(self) -> None:
        lo, hi = self.interests_per_user
        moves = self.p_related + self.p_same_leaf + self.p_complement + self.p_explore
        n_c0 = self.category_tree[0]
        needs = [
            (self.n_users >= 1, "n_users >= 1"),
            (min(self.category_tree) >= 1, "category_tree sizes >= 1"),
            (1 <= lo <= hi <= self.n_leaves, "1 <= interests_per_user <= number of leaves"),
            (self.n_items >= self.n_leaves, "n_items >= number of leaf categories"),
            (min(self.n_brands, self.n_shops) >= n_c0, "n_brands, n_shops >= c0 count"),
            (self.sessions_per_user >= 1, "sessions_per_user >= 1"),
            (self.events_per_user >= self.sessions_per_user, "events_per_user >= sessions"),
            (moves <= 1.0, "within-session move probabilities sum to <= 1"),
            (0.0 <= self.p_revisit < 1.0, "0 <= p_revisit < 1"),
            (0.0 < self.revisit_recency <= 1.0, "0 < revisit_recency <= 1"),
            (min(self.n_styles, self.max_session_views, self.days) >= 1, "sizes >= 1"),
            (self.items_per_product >= 1, "items_per_product >= 1"),
        ]
        bad = [what for ok, what in needs if not ok]
        if bad:
            raise UserError(f"invalid SynthConfig: need {'; '.join(bad)}")
        dt.date.fromisoformat(self.start)

    @classmethod
    def tiny(cls, seed: int = 0) -> SynthConfig:
        """A few hundred events over several shards: for tests (well under a second)."""
        return cls(
            seed=seed,
            n_users=40,
            n_items=150,
            events_per_user=12.0,
            sessions_per_user=3.0,
            interests_per_user=(1, 3),
            category_tree=(3, 2, 3),
            n_styles=3,
            n_brands=9,
            n_shops=12,
            days=30,
            shard_events=200,
        )

    @classmethod
    def small(cls, seed: int = 0) -> SynthConfig:
        """The quickstart shop: 3,000 users, 8,000 items, about 100k events (seconds)."""
        return cls(seed=seed)

    @classmethod
    def for_events(cls, n_events: int, seed: int = 0) -> SynthConfig:
        """A shop of about `n_events` raw events (benchmarks: 1M, 10M, ...)."""
        base = cls()
        n_users = max(1, round(n_events / base.events_per_user))
        n_items = int(np.clip(n_events // 20, 2_000, 2_000_000))
        return replace(
            base,
            seed=seed,
            n_users=n_users,
            n_items=n_items,
            category_tree=(8, 6, 10) if n_items >= 20_000 else base.category_tree,
            n_brands=int(np.clip(n_items // 100, 200, 20_000)),
            n_shops=int(np.clip(n_items // 20, 500, 100_000)),
        )

    @property
    def n_leaves(self) -> int:
        n_c0, n_c1, n_c2 = self.category_tree
        return n_c0 * n_c1 * n_c2

    @property
    def events_per_view(self) -> float:
        """Expected raw events per item view slot (the view plus its funnel events)."""
        carted_or_offered = self.cart_rate + self.offer_rate - self.cart_rate * self.offer_rate
        buy_start = carted_or_offered * self.buy_start_rate + self.direct_buy_rate
        return (
            1.0
            - self.cart_rate * self.cart_without_view_rate
            + self.like_rate
            + self.cart_rate
            + self.offer_rate
            + buy_start * (1.0 + self.purchase_rate)
        )

    @property
    def views_per_session(self) -> float:
        return self.events_per_user / (self.sessions_per_user * self.events_per_view)


# ---- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class _GroupSampler:
    """Draws a member of a given group with fixed weights (members sorted by group, one CDF each)."""

    key: np.ndarray  # (M,) float64: group + cumulative weight within the group, in (g, g + 1]
    start: np.ndarray  # (G,) first position of each group
    end: np.ndarray  # (G,) one past the last position
    members: np.ndarray  # (M,) member ids in group order

    @staticmethod
    def build(group: np.ndarray, weight: np.ndarray, n_groups: int) -> _GroupSampler:
        order = np.argsort(group, kind="stable")
        g, w = group[order], weight[order].astype(np.float64)
        counts = np.bincount(g, minlength=n_groups)
        if (counts == 0).any():
            raise ValueError("every group needs at least one member")
        end = np.cumsum(counts)
        start = end - counts
        cum = np.cumsum(w)
        before = np.concatenate([[0.0], cum])[start]  # (G,) weight before each group
        within = (cum - before[g]) / (cum[end - 1] - before)[g]
        within[end - 1] = 1.0
        return _GroupSampler(g + within, start, end, order)

    def draw(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.key, groups + rng.random(len(groups)), side="right")
        return self.members[np.clip(pos, self.start[groups], self.end[groups] - 1)]


def _zipf_weights(n_groups_of: np.ndarray, group: np.ndarray, s: float, rng) -> np.ndarray:
    """Weight 1 / (rank + 1) ** s with a random rank within each member's group."""
    order = np.lexsort((rng.random(len(group)), group))
    rank = np.empty(len(group), dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(n_groups_of)[:-1]])
    rank[order] = np.arange(len(group)) - np.repeat(first, n_groups_of)
    return 1.0 / (rank + 1.0) ** s


@dataclass(frozen=True)
class _Catalogue:
    """Items (index i = 0..n-1, sorted by leaf) and the category tree, as arrays."""

    leaf: np.ndarray  # (n_items,) leaf index
    style: np.ndarray  # (n_items,) latent style within the leaf
    quality: np.ndarray  # (n_items,) float: latent appeal, raises funnel rates
    related: np.ndarray  # (n_items,) item index of the directed "related" item (same leaf)
    popularity: np.ndarray  # (n_items,) within-leaf Zipf weight
    item_sampler: _GroupSampler  # items by leaf
    leaf_cdf: np.ndarray  # (n_leaves,) cumulative leaf popularity
    complement: np.ndarray  # (n_leaves,) complementary leaf (directed)
    columns: pl.DataFrame  # MerRec item columns (item_id ... color), one row per item index
    leaves: pl.DataFrame  # truth: c2_id, c1_id, c0_id, names, complement, popularity


def _tree_names(config: SynthConfig) -> tuple[list[str], list[str], list[str], list[bool]]:
    """c0, c1 and c2 names (unique per level) and whether each c0 is sized."""
    n_c0, n_c1, n_c2 = config.category_tree
    top = list(TAXONOMY)
    c0_names, c1_names, c2_names, sized = [], [], [], []
    for a in range(n_c0):
        base0 = top[a % len(top)]
        c0_names.append(base0 + (f" {a // len(top) + 1}" if a >= len(top) else ""))
        sized.append(base0 in _SIZED_C0)
        mids = list(TAXONOMY[base0])
        for b in range(n_c1):
            base1 = mids[b % len(mids)]
            c1_names.append(base1 + (f" {b // len(mids) + 1}" if b >= len(mids) else ""))
            nouns = TAXONOMY[base0][base1]
            c2_names.extend(
                nouns[c % len(nouns)] + (f" {c // len(nouns) + 1}" if c >= len(nouns) else "")
                for c in range(n_c2)
            )
    for names in (c1_names, c2_names):  # cycling may repeat a name under another parent
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                names[i] = f"{name} ({seen[name]})"
    return c0_names, c1_names, c2_names, sized


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        for _ in range(20):
            k = 2 + int(rng.random() < 0.5)
            syllables = rng.integers(0, len(_SYLLABLES), k)
            name = "".join(_SYLLABLES[j] for j in syllables).capitalize()
            if name not in seen:
                break
        else:
            name = f"{name} {len(names)}"
        seen.add(name)
        names.append(name)
    return names


def _null_where(values: pl.Series, mask: np.ndarray) -> pl.Series:
    return values.set(pl.Series(mask), None)


def _catalogue(config: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    n_c0, n_c1, n_c2 = config.category_tree
    n_leaves, n_items = config.n_leaves, config.n_items
    c0_names, c1_names, c2_names, sized = _tree_names(config)
    leaf_c1 = np.arange(n_leaves) // n_c2
    leaf_c0 = leaf_c1 // n_c1

    # leaf popularity (Zipf over a random order); item supply follows demand
    leaf_pop = 1.0 / (rng.permutation(n_leaves) + 1.0) ** 0.8
    leaf_pop /= leaf_pop.sum()
    per_leaf = 1 + rng.multinomial(n_items - n_leaves, leaf_pop**0.7 / (leaf_pop**0.7).sum())
    leaf = np.repeat(np.arange(n_leaves), per_leaf)
    leaf_start = np.cumsum(per_leaf) - per_leaf

    # complementary leaf: another c1 of the same c0 when there is one, else any other leaf
    span = n_c1 * n_c2
    if n_c1 > 1:
        other = (leaf_c1 % n_c1 + rng.integers(1, n_c1, n_leaves)) % n_c1
        complement = leaf_c0 * span + other * n_c2 + rng.integers(0, n_c2, n_leaves)
    else:
        complement = (np.arange(n_leaves) + rng.integers(1, max(n_leaves, 2), n_leaves)) % (
            n_leaves
        )

    # products: runs of consecutive items in a leaf share brand, color, size, style, title
    new_product = rng.random(n_items) < 1.0 / config.items_per_product
    new_product[leaf_start] = True
    product = np.cumsum(new_product) - 1
    n_products = int(product[-1]) + 1
    p_leaf = leaf[new_product]
    p_c0 = leaf_c0[p_leaf]
    p_style = rng.integers(0, config.n_styles, n_products)
    brand_c0 = np.arange(config.n_brands) % n_c0
    brand_sampler = _GroupSampler.build(
        brand_c0, _zipf_weights(np.bincount(brand_c0), brand_c0, 1.0, rng), n_c0
    )
    p_brand = brand_sampler.draw(p_c0, rng)
    p_has_brand = rng.random(n_products) >= config.no_brand_rate
    p_color = rng.integers(0, len(COLORS), n_products)
    p_adj = rng.integers(0, len(ADJECTIVES), n_products)
    p_size = rng.integers(0, len(SIZES), n_products)
    p_has_size = np.asarray(sized)[p_c0]
    leaf_log_price = np.log(25.0) + 0.8 * rng.standard_normal(n_leaves)
    p_log_price = leaf_log_price[p_leaf] + 0.35 * rng.standard_normal(n_products)

    # listings: condition, seller, price, latent quality, popularity within the leaf
    condition = rng.choice(len(_CONDITION_P), size=n_items, p=_CONDITION_P)
    shop_c0 = np.arange(config.n_shops) % n_c0
    shop_sampler = _GroupSampler.build(
        shop_c0, _zipf_weights(np.bincount(shop_c0), shop_c0, 0.8, rng), n_c0
    )
    shop = shop_sampler.draw(leaf_c0[leaf], rng)
    price = np.exp(p_log_price[product] + 0.15 * rng.standard_normal(n_items))
    price = np.maximum(3.0, np.round(price * _CONDITION_PRICE[condition]))
    quality = rng.standard_normal(n_items)
    popularity = _zipf_weights(per_leaf, leaf, config.zipf_exponent, rng)
    # related item: the successor in a random cycle through the leaf (directed, same leaf)
    cycle = np.lexsort((rng.random(n_items), leaf))  # item indices, grouped by leaf
    pos_in_leaf = np.arange(n_items) - np.repeat(leaf_start, per_leaf)
    succ = leaf_start[leaf] + (pos_in_leaf + 1) % per_leaf[leaf]
    related = np.empty(n_items, dtype=np.int64)
    related[cycle] = cycle[succ]

    item_id = rng.permutation(n_items).astype(np.int64) + 1
    product_id = rng.permutation(n_products).astype(np.int64) + 1
    brands = pl.Series("brand", _brand_names(config.n_brands, rng), dtype=pl.String)
    has_brand = p_has_brand[product]
    has_size = p_has_size[product]
    parts = pl.DataFrame(
        {
            "brand": _null_where(brands.gather(p_brand[product]), ~has_brand),
            "color": pl.Series(COLORS).gather(p_color[product]),
            "adjective": pl.Series(ADJECTIVES).gather(p_adj[product]),
            "noun": pl.Series(c2_names).gather(leaf).str.to_lowercase(),
            "size": _null_where(pl.Series(SIZES).gather(p_size[product]), ~has_size),
            "new": _null_where(
                pl.Series(["(new)"]).gather(np.zeros(n_items, np.int64)), condition != 0
            ),
        }
    )
    title = parts.select(
        pl.concat_str(
            [pl.col("brand", "color", "adjective", "noun"), "size " + pl.col("size"), "new"],
            separator=" ",
            ignore_nulls=True,
        )
    ).to_series()
    columns = pl.DataFrame(
        {
            "item_id": item_id,
            "product_id": product_id[product],
            "name": title,
            "price": price,
            "c0_id": leaf_c0[leaf] + 1,
            "c1_id": leaf_c1[leaf] + 1,
            "c2_id": leaf + 1,
            "c0_name": pl.Series(c0_names).gather(leaf_c0[leaf]),
            "c1_name": pl.Series(c1_names).gather(leaf_c1[leaf]),
            "c2_name": pl.Series(c2_names).gather(leaf),
            "brand_id": _null_where(pl.Series(p_brand[product] + 1), ~has_brand),
            "brand_name": parts["brand"],
            "item_condition_id": condition.astype(np.int64) + 1,
            "size_id": _null_where(pl.Series(p_size[product].astype(np.int64) + 1), ~has_size),
            "shipper_id": shop.astype(np.int64) + 1,
            "color": parts["color"],
            "style": p_style[product],
        }
    )
    leaves = pl.DataFrame(
        {
            "c2_id": np.arange(n_leaves, dtype=np.int64) + 1,
            "c1_id": leaf_c1.astype(np.int64) + 1,
            "c0_id": leaf_c0.astype(np.int64) + 1,
            "c2_name": c2_names,
            "c1_name": [c1_names[j] for j in leaf_c1],
            "c0_name": [c0_names[j] for j in leaf_c0],
            "complement_c2_id": complement.astype(np.int64) + 1,
            "popularity": leaf_pop,
        }
    )
    return _Catalogue(
        leaf=leaf,
        style=p_style[product],
        quality=quality,
        related=related,
        popularity=popularity,
        item_sampler=_GroupSampler.build(leaf, popularity, n_leaves),
        leaf_cdf=np.cumsum(leaf_pop),
        complement=complement,
        columns=columns,
        leaves=leaves,
    )


# ---- users ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Users:
    """Planted user traits; K = the largest number of interests, unused slots have weight 0."""

    user_id: np.ndarray  # (U,) raw id
    interests: np.ndarray  # (U, K) leaf index (unused slots repeat the first interest)
    n_interests: np.ndarray  # (U,)
    w_start: np.ndarray  # (U, K) interest weights at the start of the time span
    w_end: np.ndarray  # (U, K) ... and at its end (linear drift in between)
    style: np.ndarray  # (U,) preferred latent style
    activity: np.ndarray  # (U,) session-count multiplier, mean 1


def _users(config: SynthConfig, cat: _Catalogue, rng: np.random.Generator) -> _Users:
    n, (lo, hi) = config.n_users, config.interests_per_user
    _, n_c1, n_c2 = config.category_tree
    span = n_c1 * n_c2
    k = rng.integers(lo, hi + 1, n)
    interests = np.zeros((n, hi), dtype=np.int64)
    interests[:, 0] = np.searchsorted(cat.leaf_cdf, rng.random(n) * cat.leaf_cdf[-1])
    for j in range(1, hi):
        # half of the extra interests stay in the first interest's top category
        todo = np.ones(n, dtype=bool)
        for _ in range(50):
            m = int(todo.sum())
            if m == 0:
                break
            by_pop = np.searchsorted(cat.leaf_cdf, rng.random(m) * cat.leaf_cdf[-1])
            same_c0 = interests[todo, 0] // span * span + rng.integers(0, span, m)
            cand = np.where(rng.random(m) < 0.5, same_c0, by_pop)
            interests[todo, j] = cand
            dup = (interests[todo, :j] == cand[:, None]).any(axis=1)
            todo[np.flatnonzero(todo)[~dup]] = False
        k = np.where(todo & (k > j), j, k)  # give up on a rare unresolvable duplicate
    active = np.arange(hi)[None, :] < k[:, None]
    interests = np.where(active, interests, interests[:, :1])

    def weights() -> np.ndarray:
        g = rng.gamma(1.0, size=(n, hi)) * active
        return g / g.sum(axis=1, keepdims=True)

    w_start, w_end = weights(), weights()
    activity = rng.lognormal(0.0, 0.75, n)
    return _Users(
        user_id=rng.permutation(n).astype(np.int64) + 1,
        interests=interests,
        n_interests=k,
        w_start=w_start,
        w_end=w_end,
        style=rng.integers(0, config.n_styles, n),
        activity=activity / activity.mean(),
    )


# ---- events ---------------------------------------------------------------------------------


def _draw_items(
    cat: _Catalogue, leaf: np.ndarray, style: np.ndarray, strength: float, rng
) -> np.ndarray:
    """An item of each `leaf` by popularity, preferring `style` with probability `strength`."""
    tries = np.stack([cat.item_sampler.draw(leaf, rng) for _ in range(4)])  # (4, n)
    match = cat.style[tries] == style[None, :]
    pick = np.where((rng.random(len(leaf)) < strength) & match.any(axis=0), match.argmax(0), 0)
    return tries[pick, np.arange(len(leaf))]


def _repeat_behaviour(
    item: np.ndarray,
    user: np.ndarray,
    leaf: np.ndarray,
    style: np.ndarray,
    cat: _Catalogue,
    config: SynthConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Views (V,) in user-time order -> views with the configured repeat behaviour: accidental
    repeats of an earlier view of the same user redrawn once from the same leaf, then revisits
    of a recent earlier view (at least two views back: an immediate repeat would be merged into
    one interaction by `guim prepare`)."""
    from guim.data.dataset import repeats_earlier

    item = item.copy()
    for _ in range(_REDRAWS if config.redraw_repeats else 0):
        again = np.flatnonzero(repeats_earlier(user, item))
        leaves = cat.leaf[item[again]]
        item[again] = _draw_items(cat, leaves, style[again], config.style_strength, rng)
    first = np.r_[0, np.flatnonzero(user[1:] != user[:-1]) + 1]  # (U,) first view of each user
    first_of = np.repeat(first, np.diff(np.r_[first, len(user)]))  # (V,)
    back = 1 + rng.geometric(config.revisit_recency, len(item))  # >= 2
    revisit = (rng.random(len(item)) < config.p_revisit) & (np.arange(len(item)) - back >= first_of)
    src = np.flatnonzero(revisit)
    item[src] = item[src - back[src]]
    del leaf  # the walk's leaves are kept as they were; only items change
    return item


_REDRAWS = 3


@dataclass
class _Counters:
    sessions: int = 0
    sequences: int = 0


def _chunk_events(
    config: SynthConfig,
    cat: _Catalogue,
    users: _Users,
    lo: int,
    hi: int,
    rng: np.random.Generator,
    counters: _Counters,
) -> tuple[pl.DataFrame, np.ndarray]:
    """MerRec rows of users lo..hi-1, sorted by user and time; and the count of each event."""
    span_s = config.days * 86400.0
    # sessions: count per user, start time, focus interest (drifting with time)
    user = np.arange(lo, hi)
    n_sess = 1 + rng.poisson(users.activity[user] * (config.sessions_per_user - 1.0))
    owner = np.repeat(user, n_sess)  # (S,)
    start = rng.random(len(owner)) * span_s
    start = start[np.lexsort((start, owner))]
    frac = start / span_s
    w = (1 - frac)[:, None] * users.w_start[owner] + frac[:, None] * users.w_end[owner]  # (S, K)
    focus_k = (rng.random(len(owner))[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
    focus_k = np.minimum(focus_k, users.n_interests[owner] - 1)
    focus = users.interests[owner, focus_k]
    n_views = np.minimum(
        rng.geometric(min(1.0, 1.0 / config.views_per_session), len(owner)),
        config.max_session_views,
    )
    first = np.cumsum(n_views) - n_views
    sess = np.repeat(np.arange(len(owner)), n_views)  # (V,) session of each view

    # the walk: one vectorised step for all sessions at each position
    item = np.empty(len(sess), dtype=np.int64)
    c1 = config.p_related
    c2 = c1 + config.p_same_leaf
    c3 = c2 + config.p_complement
    c4 = c3 + config.p_explore
    for t in range(int(n_views.max())):
        act = np.flatnonzero(n_views > t)
        pos = first[act] + t
        style = users.style[owner[act]]
        leaf = focus[act].copy()
        if t == 0:
            item[pos] = _draw_items(cat, leaf, style, config.style_strength, rng)
            continue
        prev = item[pos - 1]
        r = rng.random(len(act))
        prev_leaf = cat.leaf[prev]
        leaf = np.where(r < c2, prev_leaf, leaf)
        leaf = np.where((r >= c2) & (r < c3), cat.complement[prev_leaf], leaf)
        explore = (r >= c3) & (r < c4)
        leaf[explore] = np.searchsorted(cat.leaf_cdf, rng.random(int(explore.sum())))
        leaf = np.minimum(leaf, len(cat.leaf_cdf) - 1)
        new = _draw_items(cat, leaf, style, config.style_strength, rng)
        new = np.where(r < c1, cat.related[prev], new)
        again = new == prev
        new[again] = _draw_items(cat, leaf[again], style[again], config.style_strength, rng)
        item[pos] = new

    item = _repeat_behaviour(
        item, owner[sess], focus[sess], users.style[owner[sess]], cat, config, rng
    )

    # view times: a session's views are 5 s + Exp(45 s) apart
    gap = 5.0 + rng.exponential(45.0, len(sess))
    gap[first] = 0.0
    cum = np.cumsum(gap)
    view_time = start[sess] + cum - cum[first][sess]
    next_gap = np.full(len(sess), 60.0)
    last = first + n_views - 1
    not_last = np.ones(len(sess), dtype=bool)
    not_last[last] = False
    next_gap[not_last] = gap[1:][not_last[:-1]]

    # funnel: rates scale with user-item affinity (normalised to keep the configured means)
    u = owner[sess]
    wv = (1 - frac[sess])[:, None] * users.w_start[u] + frac[sess][:, None] * users.w_end[u]
    in_w = (wv * (users.interests[u] == cat.leaf[item][:, None])).sum(axis=1)
    score = (
        2.0 * (in_w > 0)
        + 2.0 * in_w
        + 1.0 * (cat.style[item] == users.style[u])
        + 0.5 * cat.quality[item]
    )
    g = np.exp(config.affinity_strength * score)
    f = g / g.mean()

    def happens(rate: float) -> np.ndarray:
        return rng.random(len(sess)) < np.minimum(0.95, rate * f)

    like, cart, offer = (
        happens(config.like_rate),
        happens(config.cart_rate),
        happens(config.offer_rate),
    )
    direct = ~cart & ~offer & happens(config.direct_buy_rate)
    buy_start = ((cart | offer) & (rng.random(len(sess)) < config.buy_start_rate)) | direct
    purchase = buy_start & (rng.random(len(sess)) < config.purchase_rate)
    viewed = ~(cart & (rng.random(len(sess)) < config.cart_without_view_rate))
    masks = (viewed, like, cart, offer, buy_start, purchase)
    view_of = np.concatenate([np.flatnonzero(m) for m in masks])  # (E,) view slot of each event
    code = np.concatenate([np.full(int(m.sum()), k, dtype=np.int8) for k, m in enumerate(masks)])
    t = view_time[view_of] + _FUNNEL_OFFSET[code] * next_gap[view_of]
    order = np.lexsort((code, t, u[view_of]))
    view_of, code, t = view_of[order], code[order], t[order]
    ev_user = u[view_of]
    ev_sess = sess[view_of]
    base_us = (
        int(dt.datetime.fromisoformat(config.start).replace(tzinfo=dt.UTC).timestamp()) * 10**6
    )
    stime = base_us + np.round(t * 1000.0).astype(np.int64) * 1000  # (E,) microseconds, UTC

    # sequences: a user's events split at inactivity gaps of over 7 days
    new_seq = np.ones(len(t), dtype=bool)
    new_seq[1:] = (ev_user[1:] != ev_user[:-1]) | (np.diff(t) > 7 * 86400.0)
    seq = np.cumsum(new_seq) - 1
    seq_len = np.bincount(seq)[seq]

    rows = cat.columns.gather(item[view_of]).drop("style")
    frame = pl.DataFrame(
        {
            "user_id": users.user_id[ev_user],
            "sequence_id": counters.sequences + seq + 1,
            "session_id": counters.sessions + ev_sess + 1,
            "sequence_length": seq_len.astype(np.int64),
            "stime": pl.Series(stime).cast(pl.Datetime("us", "UTC")),
            "event_id": pl.Series(MERREC_EVENTS).gather(code),
        }
    ).hstack(rows)
    counters.sessions += len(owner)
    counters.sequences += int(seq[-1]) + 1
    return frame.select(MERREC_COLUMNS), np.bincount(code, minlength=len(MERREC_EVENTS))


# ---- ground truth and the whole shop --------------------------------------------------------


def _truth_frames(cat: _Catalogue, users: _Users, n_styles: int) -> dict[str, pl.DataFrame]:
    k = users.interests.shape[1]
    active = np.arange(k)[None, :] < users.n_interests[:, None]

    def ragged(values: np.ndarray) -> pl.Series:
        """(U, K) values -> list column of each user's first n_interests values."""
        long = pl.DataFrame({"u": np.nonzero(active)[0], "v": values[active]})
        return long.group_by("u", maintain_order=True).agg("v")["v"]

    w_mean = (users.w_start + users.w_end) / 2
    truth_users = pl.DataFrame(
        {
            "user_id": users.user_id,
            "interests": ragged(users.interests + 1),  # c2_id
            "weights": ragged(w_mean),
            "weights_start": ragged(users.w_start),
            "weights_end": ragged(users.w_end),
            "style": users.style.astype(np.int64),
            "activity": users.activity,
        }
    ).sort("user_id")
    truth_items = pl.DataFrame(
        {
            "item_id": cat.columns["item_id"],
            "product_id": cat.columns["product_id"],
            "c2_id": cat.leaf.astype(np.int64) + 1,
            "style": cat.style.astype(np.int64),
            "cluster": cat.leaf.astype(np.int64) * n_styles + cat.style,
            "quality": cat.quality,
            "popularity": cat.popularity,
            "related_item_id": cat.columns["item_id"].gather(cat.related),
        }
    ).sort("item_id")
    return {"users": truth_users, "items": truth_items, "categories": cat.leaves}


def synth(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> Path:
    """Generate a synthetic shop into `out_dir`; returns `out_dir`.

    Layout: `events/part-NNNNN.parquet` (MerRec columns, sorted by user then time, one shard per
    chunk of users), `truth/{users,items,categories}.parquet` (planted interests as c2_id lists
    with weights, item leaf/style/cluster, complementary leaves) and `synth.json` (the config and
    counts). Written atomically; memory stays bounded by one chunk of about `shard_events` rows.
    """
    config = config or SynthConfig.small()
    out_dir = Path(out_dir)
    rng = np.random.default_rng([config.seed, 0])
    cat = _catalogue(config, rng)
    users = _users(config, cat, rng)
    per_chunk = max(1, round(config.shard_events / config.events_per_user))
    bounds = [*range(0, config.n_users, per_chunk), config.n_users]
    counts = np.zeros(len(MERREC_EVENTS), dtype=np.int64)
    counters = _Counters()
    files = []
    shop = atomic_dir(out_dir, overwrite, is_ours=_is_shop, what="synthetic shop")
    with shop as tmp, contextlib.ExitStack() as stack:
        (tmp / "events").mkdir()
        (tmp / "truth").mkdir()
        progress = stack.enter_context(make_progress(transient=True)) if show_progress else None
        task = progress.add_task("synth", total=len(bounds) - 1, info="") if progress else None
        for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            chunk_rng = np.random.default_rng([config.seed, 1, k])
            frame, chunk_counts = _chunk_events(config, cat, users, lo, hi, chunk_rng, counters)
            name = f"part-{k:05d}.parquet"
            frame.write_parquet(tmp / "events" / name, compression="zstd")
            files.append(f"events/{name}")
            counts += chunk_counts
            del frame
            if progress is not None and task is not None:
                progress.update(task, advance=1, info=f"{int(counts.sum()):,} events")
        for name, frame in _truth_frames(cat, users, config.n_styles).items():
            frame.write_parquet(tmp / "truth" / f"{name}.parquet", compression="zstd")
        write_json(
            tmp / "synth.json",
            {
                "generator": "guim.data.synthetic",
                "version": VERSION,
                "config": asdict(config),
                "n_users": config.n_users,
                "n_items": config.n_items,
                "n_events": int(counts.sum()),
                "events_by_type": dict(zip(MERREC_EVENTS, counts.tolist(), strict=True)),
                "n_sessions": counters.sessions,
                "files": files,
            },
        )
    return out_dir


def _is_shop(path: Path) -> bool:
    """Whether `path` is a synthetic shop `synth` wrote (its synth.json names the generator)."""
    try:
        info = read_json(path / "synth.json")
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == "guim.data.synthetic"
