"""Evaluation and reports: segmentation metrics, per-case evaluation against references, the two-model
comparison (table + picture) and the case-level summary of a prediction."""
