"""Deprecated alias of :mod:`napari_propsam.devtools.baselines`, removed in the next release.

Importing it warns and returns that module itself (see :mod:`napari_propsam._deprecated`).
"""

from ._deprecated import alias_module

alias_module("napari_propsam.baselines")
