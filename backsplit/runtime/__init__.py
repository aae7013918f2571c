"""Running work: child processes with progress events and tree-wide cancel (``childprocess``), the one worker
protocol (``workerprocess``: request file in, JSON events out; ``exits``: exit statuses and failure messages;
``progress``: events and their lifecycle ``Stage``), the SLURM client (``slurm``), step generators (``steps``),
duration estimates (``durations``), torch devices and thread counts (``devices``), the nnU-Net / PyTorch
requirements (``requirements``), and keeping third-party output quiet (``quiet``)."""
