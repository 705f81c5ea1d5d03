"""Training: the config, the RL loop, SFT, evaluation, checkpoints, metrics.

`spear_rl.train(...)` is also the Python API's entry point (`spear_rl.api.train`): this package
is callable, so the name means the same thing whether or not the package was imported first.
"""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from spear_rl.api import train

        return train(*args, **kwargs)

    @property
    def __wrapped__(self) -> Any:  # inspect.signature / help() show the API's signature
        from spear_rl.api import train

        return train


sys.modules[__name__].__class__ = _CallablePackage
