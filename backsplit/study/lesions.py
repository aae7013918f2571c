"""Per-lesion table of one case (for detection curves): every reference lesion with the volume of the largest
predicted lesion that overlaps it, every predicted lesion with its volume and whether it overlaps a reference
lesion. Lesions are 26-connected components (``backsplit.evaluation.summary.lesion_components``, the same as the
metrics)."""

from __future__ import annotations

import numpy as np


def lesion_table(reference: np.ndarray, prediction: np.ndarray, voxel_ml: float) -> list[dict]:
    """Rows ``{"kind": "reference"|"predicted", "volume_ml", "matched_ml"|"matched"}`` for boolean (z, y, x) masks.

    Reference rows: ``matched_ml`` is the volume (ml) of the largest overlapping predicted lesion, 0 when missed.
    Predicted rows: ``matched`` is 1 when it overlaps a reference lesion, else 0 (a false-positive lesion)."""
    from backsplit.evaluation.summary import lesion_components

    reference, prediction = np.asarray(reference, bool), np.asarray(prediction, bool)
    ref_labels, n_ref = lesion_components(reference)
    pred_labels, n_pred = lesion_components(prediction)
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1) * voxel_ml
    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1) * voxel_ml
    best = np.zeros(n_ref + 1)
    both = (ref_labels > 0) & (pred_labels > 0)
    pairs = np.unique(np.stack([ref_labels[both], pred_labels[both]]), axis=1) if both.any() else np.zeros((2, 0), int)
    matched_pred = set()
    for ref_id, pred_id in pairs.T:
        best[ref_id] = max(best[ref_id], pred_sizes[pred_id])
        matched_pred.add(int(pred_id))
    rows = [{"kind": "reference", "volume_ml": float(ref_sizes[i]), "matched_ml": float(best[i]), "matched": ""}
            for i in range(1, n_ref + 1)]
    rows += [{"kind": "predicted", "volume_ml": float(pred_sizes[i]), "matched_ml": "",
              "matched": int(i in matched_pred)}
             for i in range(1, n_pred + 1)]
    return rows
