"""The worlds rules train in: Frozen Lake grids (:mod:`iftgym.worlds.frozen_lake`) and token generation
(:mod:`iftgym.worlds.tokens`). Each implements :class:`iftgym.world.World` and brings its Gymnasium environment."""
