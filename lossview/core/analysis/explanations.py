"""One sentence per measurement, with the paper it comes from (shown as tooltips)."""

from __future__ import annotations

from lossview.core.analysis import verdicts as V

TIPS: dict[str, str] = {
    "loss": "Training loss per logged step; a flat curve says the loss stopped improving, "
            "not that the weights stopped moving (Zhang et al. 2021).",
    "val_loss": "Loss on held-out data; a gap that grows while the training loss falls "
                "is overfitting.",
    "grad_norm": "Norm of the gradient; during a loss plateau it usually stays well above "
                 "zero, so the weights are not at a stationary point (Zhang et al. 2021).",
    "lr": "Learning rate; gradient descent on a quadratic diverges once lr exceeds "
          "2 / sharpness (Cohen et al. 2021).",
    "smoothing": "Exponential moving average of the loss curves (weight of the past); "
                 "NaN values are skipped, not smoothed over.",
    "log_y": "Show the y axes on a logarithmic scale.",
    "plateau": "Step from which the smoothed training loss stops improving; after it the "
               "weights keep wandering (Zhang et al. 2021).",
    "divergence": "First step with a non-finite loss or non-finite weights.",
    "cursor": "Current snapshot; drag it to scrub through training.",
    "pca": "Snapshots projected on the principal components of the trajectory "
           "(Li et al. 2018); coloured by step.",
    "pca_subsample": "A long run of a large model: its PCA, pairwise distances, diffusion and "
                     "stationarity use evenly spaced snapshots (the first and last included), "
                     "as the inner products of all of them would cost many times reading the "
                     "run; its distances use every snapshot.",
    "explained_variance": "Share of the trajectory's variance on each principal component; "
                          "a pure random walk gives about 6/(pi^2 k^2) "
                          "(Antognini & Sohl-Dickstein 2018).",
    "random_walk_similarity": "How close the explained-variance spectrum is to a random "
                              "walk's (1 = indistinguishable from diffusion) "
                              "(Antognini & Sohl-Dickstein 2018).",
    "wandering": "Snapshots after the loss plateau: the weights keep moving while the loss "
                 "is flat (Zhang et al. 2021).",
    "from_init": "Euclidean distance of the weights from their initial value; it often grows "
                 "like a power of the step even after the loss is flat (Kunin et al. 2021).",
    "step_length": "Distance between consecutive snapshots, ||w_i - w_(i-1)||.",
    "msd": "Mean squared displacement against lag over the segment the weights question is "
           "about (after the plateau); its log-log slope at long lags decides the weights "
           f"verdict: below {V.CONFINED_SLOPE_BELOW} confined, {V.DIFFUSIVE_SLOPE[0]}-"
           f"{V.DIFFUSIVE_SLOPE[1]} a random walk, from {V.DRIFT_SLOPE_FROM} drift; a step "
           f"length falling below x{V.SHRINKING_BELOW} means converging (Kunin et al. 2021).",
    "sharpness": "Largest Hessian eigenvalue against the stability limit (2 + 2·momentum)/lr "
                 "of SGD, where training hovers at the edge of stability; it does not apply "
                 "to adaptive optimizers such as Adam, whose steps are preconditioned "
                 "(Cohen et al. 2021).",
    "pairwise": "Distance between every pair of snapshots; a block that stays bright far "
                "from the diagonal means the weights never settle.",
    "permutation": "Distance to the last snapshot, raw and after matching hidden units "
                   "(modulo permutation), so that a permutation of neurons is not counted "
                   "as motion; the dashed line is the distance between randomly relabelled "
                   "copies of the last network (Ainsworth et al. 2022).",
    "diagnosis": "Plain-language findings from the measurements above, with their numbers.",
}


def tip(key: str) -> str:
    return TIPS.get(key, "")
