"""Names of the built-in problems, optimizers and schedules (no torch).

The implementations live in :mod:`~lossview.core.train.problems` and
:mod:`~lossview.core.train.optim`, which import torch; checking a configuration or
filling a menu needs only the names (tests check the two agree).
"""

PROBLEM_NAMES = ("quadratic", "linreg", "mlp", "bn-mlp", "cnn", "eos")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "warmup")
