"""Where a run executes: the device, seeding, and torch.distributed (process group, ranks, the
autograd-aware gather every objective sees the global batch through, DDP/SyncBatchNorm wrapping)."""
