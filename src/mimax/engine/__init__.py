"""Training engine: optimizers and schedules, checkpoints, the training loop and run directories."""
