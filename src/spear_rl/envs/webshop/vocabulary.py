"""The words the generated WebShop catalogue is made of: departments, product types, their attribute
pools, option groups and price ranges, plus brand names and title descriptors.

Data only (no logic). Rules the generator and the scorer rely on, checked by the tests:
- product type names are unique; option values never contain "/" (WebShop replaces it) and, within
  one product type, no value appears in two option groups (a click names exactly one option);
- brands and descriptors contain no attribute phrase (an attribute found in a title is one the
  product has).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProductType:
    name: str  # lower case, e.g. "dark chocolate bar"; its words drive the type-match factor
    department: str  # e.g. "grocery"
    aisle: str  # e.g. "snacks"; category path is department > aisle > name
    attributes: tuple[str, ...]  # pool the product's attributes are drawn from
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (group name, pool of values)
    price_range: tuple[float, float]  # dollars


# How an instruction phrases a chosen option value of each group ("{}" is the value).
OPTION_PHRASES: dict[str, str] = {
    "size": "in size {}",
    "color": "in {} color",
    "flavor": "in {} flavor",
    "scent": "with {} scent",
    "count": "in a {}",
    "capacity": "with {} capacity",
    "length": "in {} length",
    "model": "for {}",
    "strength": "in {} strength",
    "style": "in {} style",
    "thickness": "in {} thickness",
}

_APPAREL_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large", "3x-large")
_APPAREL_COLORS = (
    "black",
    "white",
    "navy blue",
    "heather grey",
    "olive green",
    "burgundy",
    "khaki",
    "royal blue",
    "charcoal",
    "light pink",
)
_SHOE_SIZES = ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12")
_SHOE_COLORS = ("black", "white", "grey", "navy", "brown", "tan", "red", "black white")
_CLOTHING_ATTRS = (
    "machine wash",
    "hand wash",
    "moisture wicking",
    "relaxed fit",
    "slim fit",
    "long sleeve",
    "short sleeve",
    "button closure",
    "elastic waist",
    "quick drying",
    "soft material",
    "polyester spandex",
    "zipper closure",
    "drawstring closure",
    "cotton blend",
)
_SHOE_ATTRS = (
    "non slip",
    "rubber sole",
    "arch support",
    "memory foam",
    "lace up",
    "lightweight",
    "waterproof",
    "breathable mesh",
    "wide toe box",
    "slip resistant",
)
_BEAUTY_ATTRS = (
    "long lasting",
    "cruelty free",
    "paraben free",
    "fragrance free",
    "sulfate free",
    "dermatologist tested",
    "natural ingredients",
    "sensitive skin",
    "oil free",
    "hyaluronic acid",
    "travel size",
    "alcohol free",
)
_BEAUTY_SIZES = ("1 fl oz", "1.7 fl oz", "3.4 fl oz", "6.76 fl oz", "8 fl oz", "16 fl oz")
_SCENTS = ("lavender", "vanilla", "coconut", "citrus", "unscented", "rose", "sandalwood", "mint")
_GROCERY_ATTRS = (
    "gluten free",
    "non gmo",
    "keto friendly",
    "low sugar",
    "sugar free",
    "high protein",
    "certified organic",
    "kosher certified",
    "low carb",
    "plant based",
    "dairy free",
    "low calorie",
    "individually wrapped",
    "ready to eat",
    "caffeine free",
)
_PACKS = ("pack of 2", "pack of 3", "6 pack", "12 pack", "24 pack")
_ELECTRONICS_ATTRS = (
    "fast charging",
    "noise cancelling",
    "water resistant",
    "long battery life",
    "high definition",
    "easy to use",
    "plug and play",
    "compact size",
    "hands free",
    "bluetooth 5.0",
    "touch control",
    "usb c",
)
_ELECTRONICS_COLORS = ("black", "white", "silver", "space grey", "midnight blue", "rose gold")
_HOME_ATTRS = (
    "easy to clean",
    "dishwasher safe",
    "eco friendly",
    "space saving",
    "easy assemble",
    "living room",
    "non toxic",
    "heavy duty",
    "modern design",
    "high density",
    "machine washable",
    "stain resistant",
)
_HOME_COLORS = ("ivory", "beige", "grey", "teal", "mustard yellow", "sage green", "dark brown")
_HEALTH_ATTRS = (
    "easy to use",
    "bpa free",
    "non gmo",
    "gluten free",
    "high potency",
    "travel friendly",
    "rechargeable",
    "alcohol free",
    "third party tested",
    "sugar free",
)
_PET_ATTRS = (
    "easy clean",
    "non toxic",
    "durable construction",
    "grain free",
    "natural ingredients",
    "machine washable",
    "odor control",
    "for small dogs",
    "for large dogs",
    "vet recommended",
)
_SPORTS_ATTRS = (
    "non slip",
    "bpa free",
    "lightweight",
    "easy carry",
    "leak proof",
    "double wall",
    "eco friendly",
    "heavy duty",
    "high density",
    "waterproof",
    "quick setup",
)


def _t(name, department, aisle, attributes, options, price_range) -> ProductType:
    return ProductType(name, department, aisle, tuple(attributes), tuple(options), price_range)


# fmt: off
PRODUCT_TYPES: tuple[ProductType, ...] = (
    # clothing
    _t("crew neck t-shirt", "clothing", "tops", _CLOTHING_ATTRS,
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (8.0, 35.0)),
    _t("hooded sweatshirt", "clothing", "tops", _CLOTHING_ATTRS,
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (18.0, 60.0)),
    _t("polo shirt", "clothing", "tops", _CLOTHING_ATTRS,
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (12.0, 45.0)),
    _t("jogger pants", "clothing", "bottoms", _CLOTHING_ATTRS,
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (15.0, 55.0)),
    _t("denim jeans", "clothing", "bottoms", _CLOTHING_ATTRS,
       [("size", ("28w x 30l", "30w x 30l", "32w x 32l", "34w x 32l", "36w x 34l")),
        ("color", ("light wash", "medium wash", "dark wash", "black", "stone grey"))],
       (20.0, 80.0)),
    _t("rain jacket", "clothing", "outerwear", _CLOTHING_ATTRS + ("water resistant", "packable"),
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (30.0, 120.0)),
    _t("summer dress", "clothing", "dresses", _CLOTHING_ATTRS,
       [("size", _APPAREL_SIZES), ("color", _APPAREL_COLORS)], (18.0, 70.0)),
    _t("ankle socks", "clothing", "socks", _CLOTHING_ATTRS[:8],
       [("size", ("small", "medium", "large")), ("count", ("3 pairs", "6 pairs", "12 pairs"))],
       (6.0, 25.0)),
    # shoes
    _t("running shoes", "shoes", "athletic", _SHOE_ATTRS,
       [("size", _SHOE_SIZES), ("color", _SHOE_COLORS)], (35.0, 140.0)),
    _t("hiking boots", "shoes", "outdoor", _SHOE_ATTRS,
       [("size", _SHOE_SIZES), ("color", _SHOE_COLORS)], (50.0, 180.0)),
    _t("slip-on sneakers", "shoes", "casual", _SHOE_ATTRS,
       [("size", _SHOE_SIZES), ("color", _SHOE_COLORS)], (25.0, 90.0)),
    _t("house slippers", "shoes", "casual", _SHOE_ATTRS,
       [("size", ("small", "medium", "large", "x-large")), ("color", _SHOE_COLORS)],
       (10.0, 40.0)),
    _t("sandals", "shoes", "casual", _SHOE_ATTRS,
       [("size", _SHOE_SIZES), ("color", _SHOE_COLORS)], (15.0, 70.0)),
    # beauty
    _t("facial cleanser", "beauty", "skin care", _BEAUTY_ATTRS,
       [("size", _BEAUTY_SIZES), ("scent", _SCENTS)], (6.0, 40.0)),
    _t("hydrating face cream", "beauty", "skin care", _BEAUTY_ATTRS,
       [("size", _BEAUTY_SIZES)], (10.0, 65.0)),
    _t("sunscreen lotion", "beauty", "skin care", _BEAUTY_ATTRS + ("broad spectrum",),
       [("size", _BEAUTY_SIZES), ("count", _PACKS[:3])], (7.0, 35.0)),
    _t("eau de parfum", "beauty", "fragrance", _BEAUTY_ATTRS,
       [("size", _BEAUTY_SIZES[:4]), ("scent", _SCENTS)], (25.0, 150.0)),
    _t("matte lipstick", "beauty", "makeup", _BEAUTY_ATTRS,
       [("color", ("ruby red", "nude", "coral", "berry", "mauve", "fuchsia", "brick red"))],
       (5.0, 30.0)),
    _t("nail polish", "beauty", "makeup", _BEAUTY_ATTRS + ("quick dry", "chip resistant"),
       [("color", ("ruby red", "nude", "coral", "berry", "mauve", "fuchsia", "glitter gold"))],
       (4.0, 20.0)),
    _t("hair shampoo", "beauty", "hair care", _BEAUTY_ATTRS + ("color safe",),
       [("size", _BEAUTY_SIZES), ("scent", _SCENTS)], (6.0, 35.0)),
    _t("hair conditioner", "beauty", "hair care", _BEAUTY_ATTRS + ("color safe",),
       [("size", _BEAUTY_SIZES), ("scent", _SCENTS)], (6.0, 35.0)),
    _t("eyeliner pencil", "beauty", "makeup", _BEAUTY_ATTRS + ("smudge proof",),
       [("color", ("jet black", "brown", "navy", "bronze", "plum")), ("count", _PACKS[:2])],
       (4.0, 22.0)),
    # grocery
    _t("dark chocolate bar", "grocery", "snacks", _GROCERY_ATTRS,
       [("flavor", ("sea salt", "almond", "orange", "mint", "raspberry", "espresso")),
        ("count", _PACKS)], (3.0, 45.0)),
    _t("protein bar", "grocery", "snacks", _GROCERY_ATTRS,
       [("flavor", ("peanut butter", "chocolate chip", "cookie dough", "birthday cake",
                    "salted caramel")), ("count", _PACKS)], (8.0, 45.0)),
    _t("green tea", "grocery", "beverages", _GROCERY_ATTRS,
       [("flavor", ("jasmine", "matcha", "lemon ginger", "honey", "original")),
        ("count", ("20 tea bags", "40 tea bags", "100 tea bags"))], (4.0, 30.0)),
    _t("ground coffee", "grocery", "beverages", _GROCERY_ATTRS,
       [("flavor", ("french roast", "hazelnut", "vanilla bean", "colombian", "decaf")),
        ("size", ("12 oz", "24 oz", "2 lb"))], (7.0, 40.0)),
    _t("trail mix", "grocery", "snacks", _GROCERY_ATTRS,
       [("flavor", ("sweet and salty", "tropical", "dark chocolate cherry", "classic nut")),
        ("size", ("8 oz", "16 oz", "26 oz"))], (5.0, 30.0)),
    _t("beef jerky", "grocery", "snacks", _GROCERY_ATTRS,
       [("flavor", ("original", "teriyaki", "peppered", "sweet and hot")),
        ("size", ("2.85 oz", "8 oz", "16 oz"))], (6.0, 40.0)),
    _t("extra virgin olive oil", "grocery", "pantry", _GROCERY_ATTRS,
       [("size", ("16.9 fl oz", "25.3 fl oz", "33.8 fl oz", "68 fl oz"))], (8.0, 45.0)),
    _t("granola cereal", "grocery", "breakfast", _GROCERY_ATTRS,
       [("flavor", ("honey almond", "cinnamon", "blueberry", "maple pecan")),
        ("size", ("11 oz", "22 oz", "35 oz"))], (4.0, 25.0)),
    _t("potato chips", "grocery", "snacks", _GROCERY_ATTRS,
       [("flavor", ("sea salt", "barbecue", "sour cream and onion", "jalapeno", "salt and vinegar")),
        ("count", _PACKS)], (3.0, 35.0)),
    _t("sparkling water", "grocery", "beverages", _GROCERY_ATTRS,
       [("flavor", ("lime", "grapefruit", "black cherry", "lemon", "unflavored")),
        ("count", ("8 cans", "12 cans", "24 cans"))], (5.0, 30.0)),
    # electronics
    _t("wireless earbuds", "electronics", "audio", _ELECTRONICS_ATTRS,
       [("color", _ELECTRONICS_COLORS)], (20.0, 180.0)),
    _t("bluetooth speaker", "electronics", "audio", _ELECTRONICS_ATTRS,
       [("color", _ELECTRONICS_COLORS)], (25.0, 200.0)),
    _t("usb c charger", "electronics", "power", _ELECTRONICS_ATTRS,
       [("capacity", ("20w", "30w", "45w", "65w", "100w")), ("color", ("black", "white"))],
       (10.0, 60.0)),
    _t("hdmi cable", "electronics", "cables", _ELECTRONICS_ATTRS + ("4k support",),
       [("length", ("3 ft", "6 ft", "10 ft", "15 ft", "25 ft")), ("count", _PACKS[:2])],
       (6.0, 35.0)),
    _t("wireless mouse", "electronics", "computer accessories", _ELECTRONICS_ATTRS,
       [("color", _ELECTRONICS_COLORS)], (10.0, 70.0)),
    _t("phone case", "electronics", "phone accessories", _ELECTRONICS_ATTRS + ("shockproof",),
       [("model", ("iphone 13", "iphone 14", "iphone 15", "galaxy s23", "pixel 8")),
        ("color", ("clear", "black", "navy", "lavender", "forest green"))], (8.0, 40.0)),
    _t("portable power bank", "electronics", "power", _ELECTRONICS_ATTRS,
       [("capacity", ("5000mah", "10000mah", "20000mah", "26800mah")),
        ("color", ("black", "white", "blue"))], (15.0, 90.0)),
    _t("smart watch", "electronics", "wearables", _ELECTRONICS_ATTRS + ("heart rate monitor",),
       [("color", _ELECTRONICS_COLORS), ("size", ("40mm", "44mm", "46mm"))], (40.0, 300.0)),
    # home and kitchen
    _t("throw pillow cover", "home", "decor", _HOME_ATTRS,
       [("size", ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch", "12 x 20 inch")),
        ("color", _HOME_COLORS)], (8.0, 35.0)),
    _t("bath towel set", "home", "bath", _HOME_ATTRS + ("quick drying",),
       [("color", _HOME_COLORS), ("count", ("2 piece", "4 piece", "6 piece"))], (20.0, 80.0)),
    _t("scented candle", "home", "decor", _HOME_ATTRS + ("long burning",),
       [("scent", _SCENTS), ("size", ("4 oz", "8 oz", "14 oz"))], (8.0, 45.0)),
    _t("storage basket", "home", "storage", _HOME_ATTRS,
       [("size", ("small", "medium", "large")), ("color", _HOME_COLORS)], (10.0, 50.0)),
    _t("wall clock", "home", "decor", _HOME_ATTRS + ("silent movement", "battery operated"),
       [("size", ("10 inch", "12 inch", "14 inch")), ("color", ("black", "white", "gold"))],
       (12.0, 70.0)),
    _t("ceramic coffee mug", "home", "kitchen", _HOME_ATTRS + ("microwave safe",),
       [("capacity", ("12 oz", "16 oz", "20 oz")), ("color", _HOME_COLORS)], (8.0, 35.0)),
    _t("bed sheet set", "home", "bedding", _HOME_ATTRS + ("deep pocket",),
       [("size", ("twin", "full", "queen", "king", "california king")), ("color", _HOME_COLORS)],
       (25.0, 120.0)),
    _t("area rug", "home", "decor", _HOME_ATTRS,
       [("size", ("2 x 3 ft", "3 x 5 ft", "5 x 7 ft", "8 x 10 ft")), ("color", _HOME_COLORS)],
       (30.0, 250.0)),
    _t("table lamp", "home", "lighting", _HOME_ATTRS + ("dimmable", "usb port"),
       [("color", ("black", "white", "brass", "walnut")),
        ("style", ("farmhouse", "mid century", "industrial"))], (20.0, 90.0)),
    # health and personal care
    _t("electric toothbrush", "health", "oral care", _HEALTH_ATTRS + ("pressure sensor",),
       [("color", ("white", "black", "pink", "blue")), ("count", ("1 brush head",
                                                                   "2 brush heads"))],
       (25.0, 150.0)),
    _t("vitamin c gummies", "health", "supplements", _HEALTH_ATTRS + ("immune support",),
       [("flavor", ("orange", "mixed berry", "lemon")), ("count", ("60 count", "120 count",
                                                                    "180 count"))],
       (8.0, 35.0)),
    _t("fish oil capsules", "health", "supplements", _HEALTH_ATTRS + ("omega 3",),
       [("count", ("60 count", "120 count", "180 count")), ("strength", ("1000mg", "1200mg",
                                                                           "2000mg"))],
       (10.0, 45.0)),
    _t("hand sanitizer", "health", "personal care", _HEALTH_ATTRS + ("moisturizing",),
       [("scent", _SCENTS[:6]), ("size", ("2 fl oz", "8 fl oz", "12 fl oz"))], (3.0, 25.0)),
    _t("reading glasses", "health", "vision", _HEALTH_ATTRS + ("blue light blocking",),
       [("strength", ("+1.0", "+1.5", "+2.0", "+2.5", "+3.0")), ("color", ("black", "tortoise",
                                                                            "clear"))],
       (10.0, 45.0)),
    _t("heating pad", "health", "pain relief", _HEALTH_ATTRS + ("auto shut off",),
       [("size", ("12 x 15 inch", "12 x 24 inch", "20 x 24 inch"))], (20.0, 60.0)),
    # pet supplies
    _t("dog chew toy", "pets", "dog toys", _PET_ATTRS,
       [("size", ("small", "medium", "large")), ("color", ("red", "blue", "green", "orange"))],
       (5.0, 30.0)),
    _t("clumping cat litter", "pets", "cat supplies", _PET_ATTRS,
       [("size", ("10 lb", "20 lb", "40 lb")), ("scent", ("unscented", "lavender", "fresh"))],
       (8.0, 40.0)),
    _t("dry dog food", "pets", "dog food", _PET_ATTRS,
       [("flavor", ("chicken", "salmon", "beef", "lamb")), ("size", ("5 lb", "15 lb", "30 lb"))],
       (12.0, 80.0)),
    _t("orthopedic pet bed", "pets", "beds", _PET_ATTRS,
       [("size", ("small", "medium", "large", "x-large")), ("color", ("grey", "brown", "navy",
                                                                       "beige"))],
       (20.0, 110.0)),
    _t("cat scratching post", "pets", "cat supplies", _PET_ATTRS,
       [("size", ("20 inch", "28 inch", "34 inch")), ("color", ("beige", "grey", "dark brown"))],
       (15.0, 60.0)),
    # sports and outdoors
    _t("yoga mat", "sports", "fitness", _SPORTS_ATTRS,
       [("thickness", ("4mm", "6mm", "8mm", "10mm")), ("color", ("purple", "black", "teal",
                                                               "pink", "grey"))],
       (15.0, 70.0)),
    _t("insulated water bottle", "sports", "hydration", _SPORTS_ATTRS,
       [("capacity", ("18 oz", "24 oz", "32 oz", "40 oz")), ("color", ("black", "white",
                                                                      "seafoam", "navy",
                                                                      "coral"))],
       (12.0, 45.0)),
    _t("resistance bands", "sports", "fitness", _SPORTS_ATTRS,
       [("count", ("set of 3", "set of 5", "set of 11")), ("color", ("multicolor", "black"))],
       (8.0, 40.0)),
    _t("camping tent", "sports", "camping", _SPORTS_ATTRS,
       [("capacity", ("2 person", "4 person", "6 person")), ("color", ("green", "orange",
                                                                      "grey"))],
       (50.0, 300.0)),
    _t("adjustable dumbbell set", "sports", "fitness", _SPORTS_ATTRS,
       [("style", ("25 lb pair", "50 lb pair", "90 lb pair"))], (60.0, 400.0)),
)

BRANDS: tuple[str, ...] = (
    "Northwind", "Bluepine", "Harbor Lane", "Kestrel", "Amberly", "Maplecrest", "Everhill",
    "Solace", "Tidewell", "Brightfield", "Copperleaf", "Juniper & Co", "Lumen", "Ridgeway",
    "Seabright", "Willowby", "Oakmont", "Fernhaven", "Silverline", "Crestview", "Dovetail",
    "Meadowlark", "Stonebridge", "Wildcraft", "Zephyr", "Alder", "Birchwood", "Cobalt",
    "Driftwood", "Elmstead",
)

# Title words between brand and type; plain adjectives that are no attribute phrase.
DESCRIPTORS: tuple[str, ...] = (
    "Classic", "Premium", "Everyday", "Deluxe", "Signature", "Essential", "Original", "Select",
    "Heritage", "Urban", "Studio", "Prime", "Coastal", "Summit", "Basic", "Elite", "Vintage",
    "Modern", "Pure", "Daily",
)
# fmt: on

# One generic sentence per department for descriptions (no attribute phrases, no option values).
DEPARTMENT_BLURBS: dict[str, str] = {
    "clothing": "A wardrobe staple made to be worn again and again.",
    "shoes": "Built for comfort from the first step to the last.",
    "beauty": "Part of a simple routine that fits any day.",
    "grocery": "A pantry favourite for the whole family.",
    "electronics": "Designed to work with the devices you already own.",
    "home": "Brings warmth and order to any room of the house.",
    "health": "Made to support your wellbeing every day.",
    "pets": "Made for happy pets and their people.",
    "sports": "Ready for training days and weekend adventures.",
}

# Generic feature bullets shown after the attribute bullets.
GENERIC_FEATURES: tuple[str, ...] = (
    "Satisfaction guaranteed: contact us with any question",
    "Ships in recyclable packaging",
    "Backed by a one year warranty",
    "Designed by our own team",
)
