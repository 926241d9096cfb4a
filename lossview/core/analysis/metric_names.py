"""The names under which training loops log each quantity: one list, for core and GUI alike.

The analyses (plateau, answers, gradient behaviour) and the panels look metrics up with
``run.metric(*NAMES)``, which also tries ``Run.metric_aliases``; the first name found wins,
so the order is the order of preference.
"""

from __future__ import annotations

#: The mini-batch loss of each step, as most loops, Lightning and HF Trainer log it.
BATCH_LOSS = ("loss",)
#: A training loss under an explicit name (lossview's trainer logs the full-data loss of
#: each snapshot as ``train_loss`` beside the mini-batch ``loss``).
TRAIN_LOSS = ("train_loss", "loss_train", "train/loss", "training_loss",
              # the full-data loss lossview computes per snapshot from a model file where
              # the folder logged none (lossview.core.surface.finite.LOSS_FULL)
              "loss_full")
#: The loss the analyses use (plateau, answers): the mini-batch loss where logged (its
#: every step counts), else a training loss.
LOSS = BATCH_LOSS + TRAIN_LOSS
#: Held-out loss.
VAL_LOSS = ("val_loss", "eval_loss", "valid_loss", "validation_loss", "test_loss", "val/loss")
#: Gradient norm.
GRAD_NORM = ("grad_norm", "gradient_norm", "gradnorm", "grad_norm_full")
#: Norm of the weight update of a step.
UPDATE_NORM = ("update_norm",)
#: Learning rate (HF Trainer logs ``learning_rate``).
LR = ("lr", "learning_rate")
