"""WebShop: a shopping environment on a generated catalogue ("webshop"), and an adapter that drives
an original WebShop server over HTTP ("webshop_http"). Importing this package registers both."""

from spear_rl.envs.webshop.adapter import WebShopHTTPEnv, WebShopServerError
from spear_rl.envs.webshop.catalogue import Catalogue, Product, build_catalogue
from spear_rl.envs.webshop.env import SUCCESS_REWARD, WebShopEnv
from spear_rl.envs.webshop.instructions import Goal, make_goal
from spear_rl.envs.webshop.reward import PurchaseScore, score_purchase

__all__ = [
    "SUCCESS_REWARD",
    "Catalogue",
    "Goal",
    "Product",
    "PurchaseScore",
    "WebShopEnv",
    "WebShopHTTPEnv",
    "WebShopServerError",
    "build_catalogue",
    "make_goal",
    "score_purchase",
]
