"""Measuring policies: preference estimators and their exact bias (:mod:`~iftgym.metrics.estimators`), bias maps
(:mod:`~iftgym.metrics.bias`), statistics over seeds (:mod:`~iftgym.metrics.stats`) and ``assert_estimator_bias``
for unit tests (:mod:`~iftgym.metrics.testing`)."""
