"""Measuring policies: preference estimators and their exact bias (:mod:`~iftgym.metrics.estimators`), bias maps
(:mod:`~iftgym.metrics.bias`), statistics over seeds (:mod:`~iftgym.metrics.stats`), what one optimiser step does
(:mod:`~iftgym.metrics.update`: the grid's ``update_field``; :mod:`~iftgym.metrics.update_tokens`: the token world's
``token_update``, with each answer position's loss weight) and ``assert_estimator_bias`` for unit tests
(:mod:`~iftgym.metrics.testing`)."""
