"""Model manager: the models location, list/show, zip export/import with checksums, trust, removal, lineage.

``location.py`` (where models live), ``catalog.py`` (list, show, choose for a volume), ``archive.py`` (zip export and
verified import), ``trust.py`` (models from elsewhere are untrusted until confirmed), ``usage.py`` (in-use markers),
``lineage.py`` (dataset version and parent model in the manifest), ``remove.py``.
"""
