"""Experiments: whole runs that train and measure, returning data and printing nothing. ``compare`` (the paper's
Frozen Lake comparison), ``lm`` (tiny GPTs on token tasks), ``bias`` (one policy's estimator bias) and
``baselines`` (Stable-Baselines3's PPO)."""
