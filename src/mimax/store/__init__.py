"""What a run leaves on disk: atomic writes, checkpoints, and the run directory that owns every path."""
