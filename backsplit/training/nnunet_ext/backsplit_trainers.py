"""BackSplit's trainer classes for nnU-Net's own tools: the folder of this file is an ``nnUNet_extTrainer`` path.

``export nnUNet_extTrainer=<this folder>`` (``backsplit.training.environment.nnunet_ext_folder()`` prints it) lets
``nnUNetv2_train -tr BackSplitTrainer``, ``nnUNetv2_predict -tr BackSplitTrainer`` and
``nnUNetv2_find_best_configuration -tr BackSplitTrainer`` find BackSplit's trainer: nnU-Net 2.8 imports every module
of the folders named there (``nnunetv2/utilities/find_objects.recursive_find_trainer_class_by_name``) and takes the
class of that name. BackSplit's own commands never look trainers up by name.
"""

from backsplit.training.trainer import BackSplitTrainer

__all__ = ["BackSplitTrainer"]
