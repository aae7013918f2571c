"""nnU-Net v2 training for BackSplit datasets, run in a child process.

``options`` (what to train, and the checks that need no GPU), ``environment`` (nnU-Net variables for the child
only), ``paths`` (nnU-Net's preprocessed and results folders), ``process`` (start / poll / cancel the training child:
the shared worker protocol of ``runtime/workerprocess``), ``cluster`` (one training as a SLURM job, followed like a
local one), ``follow`` (a training followed in a terminal), ``worker`` (the child: the job and its ``main``),
``prepare`` (plan and preprocess once), ``fold`` (one fold's training, the fine-tuning checks, the model copy),
``ddp`` (one training on several GPUs), ``trainer`` (nnU-Net trainer subclass: epochs, learning rate, progress
events, target-aware sampling), ``timing`` (the up-front estimate), ``status`` (progress bookkeeping for the
displays), ``manifest`` (the model folder's ``backsplit_model.json``), ``lock`` (one training per output folder),
``pretrained`` (weights of a model to fine-tune from), ``colab`` (learned context). torch / nnunetv2 are imported
inside functions only.
"""
