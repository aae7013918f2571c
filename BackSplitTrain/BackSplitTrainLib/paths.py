"""The training panel's folder rules: they live in ``BackSplitShared.paths`` (both panels use them); kept here so
that existing imports keep working."""

from BackSplitShared.paths import default_work_folder, is_unset, resolve_folder  # noqa: F401
