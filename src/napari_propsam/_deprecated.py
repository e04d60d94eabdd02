"""Old module paths kept for one release as aliases of the modules that replaced them.

An alias is not a copy: importing the old path registers the new module object (and, for a
package, each of its submodules) in :data:`sys.modules` under the old name, so
``napari_propsam.synthetic.make_volume is napari_propsam.devtools.synthetic.make_volume`` and
``isinstance`` checks and pickles keep working across both names. The first import of an old
path emits a :class:`DeprecationWarning` naming the new one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from types import ModuleType

# old path -> new path; the release that removes the aliases deletes this file and the shims
MOVED = {
    "napari_propsam.synthetic": "napari_propsam.devtools.synthetic",
    "napari_propsam.evaluation": "napari_propsam.devtools.evaluation",
    "napari_propsam.baselines": "napari_propsam.devtools.baselines",
    "napari_propsam.demo": "napari_propsam.devtools.demo",
    "napari_propsam.prompts": "napari_propsam.prompt_checks",
}


def message(old: str) -> str:
    """The deprecation message for an old path.

    Args:
        old: A key of :data:`MOVED`.

    Returns:
        One sentence naming the new path.
    """
    return (
        f"{old} is deprecated and will be removed in the next release; import {MOVED[old]} instead"
    )


def alias_module(old: str, *, register: bool = True) -> ModuleType:
    """Warn, then make ``old`` (and its submodules) name the module that replaced it.

    Called from the shim module left at the old path, while that shim is being imported: the
    import system then hands back whatever ``sys.modules[old]`` holds once the shim has run,
    i.e. the new module itself.

    Args:
        old: The old dotted path, a key of :data:`MOVED`.
        register: ``False`` when the shim runs as ``__main__`` (``python -m``), where
            ``sys.modules`` must keep the running script.

    Returns:
        The new module.
    """
    # stacklevel 3: warn <- alias_module <- the shim; importlib's own frames are skipped, so
    # the warning points at the line that imported the old path
    warnings.warn(message(old), DeprecationWarning, stacklevel=3)
    new = MOVED[old]
    module = importlib.import_module(new)
    if register:
        sys.modules[old] = module
        # a package's submodules too, so `import old.sub` finds them in sys.modules before the
        # import system would load a second copy of `new.sub` from the package's __path__
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            sys.modules[f"{old}.{info.name}"] = importlib.import_module(f"{new}.{info.name}")
    return module
