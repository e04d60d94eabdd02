"""Development tooling: what builds, trains and measures the engine, not the engine itself.

- :mod:`~napari_propsam.devtools.synthetic`: the procedural labelled volumes the bundled
  weights were trained on, the held-out families and the napari sample stack;
- :mod:`~napari_propsam.devtools.evaluation`: the benchmark behind ``propsam bench``;
- :mod:`~napari_propsam.devtools.baselines`: the random-walker baseline it compares against;
- :mod:`~napari_propsam.devtools.demo`: the main job (``make run``).

Nothing here is imported by the package at start-up; ``training`` and ``cli`` import it lazily.
The old top-level paths (``napari_propsam.synthetic`` ...) are deprecated aliases of these
modules (:mod:`napari_propsam._deprecated`).
"""
