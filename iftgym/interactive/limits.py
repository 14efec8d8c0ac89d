"""The ranges of the Frozen Lake explorer's seeds and steps sliders (a slider would clamp a value outside its range),
in a module of their own so that the explorer and the pages ``iftgym explore`` serves read one definition, and the
command line reads it without importing ipywidgets or torch."""

LIMITS = {"seeds": (2, 50), "steps": (10, 1000)}
