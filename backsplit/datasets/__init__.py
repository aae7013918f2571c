"""The exported dataset folder, the product's central artefact, and everything that writes or reads it.

``layout.py`` the on-disk format: folder names, dataset.json (its one reader and writer), case files, twin links,
file hashes, the atomic move into place; ``folder.py`` ``DatasetFolder``, the typed read-only view every reader
uses (variant, schema, twin, cases, channels, version, recorded file hashes = the one content identity);
``validation.py`` the checks of a case against the schema; ``casewriter.py`` checks, labels and writes one case
(shared by export and add); ``export.py`` writes a dataset and its binary twin; ``versions.py`` records versions and
file hashes in dataset.json and finds earlier versions' snapshots; ``policy.py`` holds the checks a new case must
pass against the dataset; ``add.py`` appends cases as a new version.
"""
