"""Explanations: figures (:mod:`~iftgym.explain.figures`, :mod:`~iftgym.explain.bias`, :mod:`~iftgym.explain.strips`)
and console tables (:mod:`~iftgym.explain.tables`) drawn from what experiments return. Nothing here trains."""
