"""Labels: the label schema (which segment becomes which value), segment-name matching, standard terminology,
and generated context labels (rings, k-means)."""
