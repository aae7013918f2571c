"""Dataset versions: append cases to an exported BackSplit dataset (and its binary twin) as a new version.

``versions.py`` records versions and file hashes in dataset.json and finds earlier versions' snapshots;
``policy.py`` holds the checks a new case must pass against the dataset; ``add.py`` writes the new version.
"""
