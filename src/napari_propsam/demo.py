"""Deprecated alias of :mod:`napari_propsam.devtools.demo`, removed in the next release.

``python -m napari_propsam.demo`` still runs the demo, after a warning naming
``python -m napari_propsam.devtools.demo``.
"""

import warnings

from ._deprecated import alias_module, message

if __name__ == "__main__":
    # run as a script: attributed to __main__, the warning is shown under Python's defaults
    warnings.warn(message("napari_propsam.demo"), DeprecationWarning, stacklevel=1)
    from .devtools.demo import main

    raise SystemExit(main())
alias_module("napari_propsam.demo")
