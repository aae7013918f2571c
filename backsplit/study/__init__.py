"""``backsplit study``: does BackSplit help on my data? Arms x folds x seeds, trained, predicted, evaluated, reported.

``arms`` (the arm registry: binary, backsplit, drop:<support>, noisy:<kind>, rings, kmeans, finetune,
sampling:<mode>; a new arm is one ``register_arm`` call), ``hashing`` (content hashes of files and settings),
``plan`` (pure: the units to run and their content hashes), ``derive`` (derived datasets through the export code),
``runtask`` (runs one unit: ``python -m backsplit.study.runtask STUDY UNIT``; calls backsplit.training and
backsplit.inference), ``local`` and ``slurm`` (executors: they only start units), ``runner`` (waves of units,
resume, collection), ``stats`` / ``report`` / ``plots`` (pure over the per-case tables).
"""
