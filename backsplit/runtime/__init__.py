"""Running work: child processes with progress events and tree-wide cancel, step generators, duration estimates,
torch devices, and keeping third-party output quiet."""
