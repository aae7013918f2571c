"""The ``nnUNet_extTrainer`` folder of BackSplit: ``backsplit_trainers.py`` makes BackSplit's trainer visible to
nnU-Net's own tools (a package only so that it is installed with BackSplit; nnU-Net imports its modules by file)."""
