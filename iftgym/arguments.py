"""Command-line arguments that several ``iftgym`` sub-commands share (in a module of their own: the ``bias``
command registers itself from :mod:`iftgym.explain.bias`, which :mod:`iftgym.cli` imports)."""

from __future__ import annotations

import argparse


def add_dynamics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--slippery``, ``--success-rate`` and ``--gamma``: the Frozen Lake dynamics and the exact solver's discount."""
    parser.add_argument("--slippery", action="store_true", help="Gymnasium's is_slippery dynamics")
    parser.add_argument("--success-rate", type=float, default=1 / 3, help="intended-move probability when slippery")
    parser.add_argument("--gamma", type=float, default=0.95, help="exact solver's discount in [0, 1) (default: 0.95)")
