"""Experiments: whole runs that train and measure, returning data and printing nothing. ``config`` (every setting
of a comparison, in any world, declared once), ``runner`` (the one algorithm runner), ``compare`` (a comparison:
Frozen Lake's maps here, the token world and plugin worlds through ``worlds``), ``paired`` (statistics against a
baseline), ``sweep`` (many comparisons), ``bias`` (one policy's estimator bias), ``generate`` (a saved model's
answers) and ``baselines`` (Stable-Baselines3's PPO)."""
