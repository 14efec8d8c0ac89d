"""Explanations: figures (:mod:`~iftgym.explain.figures`, :mod:`~iftgym.explain.bias`, :mod:`~iftgym.explain.strips`),
update maps and update strips (:mod:`~iftgym.explain.update`: the grid's ``draw_update_map``;
:mod:`~iftgym.explain.update_tokens`: the token world's ``draw_token_update``) and console tables
(:mod:`~iftgym.explain.tables`) drawn from what experiments return. Nothing here trains."""
