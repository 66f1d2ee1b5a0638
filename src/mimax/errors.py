"""User-facing errors. The CLI prints ``mimax: error: <message>`` (one line) and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (flags, paths, data, checkpoints): no traceback is shown."""


class DataError(UserError):
    """Data that is missing or not in the expected layout; the message names the path and the layout."""


class TrainingDiverged(Exception):
    """Training produced a non-finite loss, gradient or weight (``--on_nan``); the CLI exits with code 3."""


def environment_error(exc: BaseException) -> str | None:
    """The one-line message for a failure of the machine rather than of mimax (a full disk or inode
    table, a quota, a name too long, no memory, no more processes), or None for anything else."""
    import errno

    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        hint = {errno.ENOSPC: "; free space", errno.EDQUOT: "; free space", errno.EFBIG: "; free space",
                errno.EAGAIN: "; lower --num_workers", errno.EMFILE: "; lower --num_workers",
                errno.ENAMETOOLONG: "; use a shorter path"}.get(exc.errno, "")
        return f"{where}{reason}{hint}"
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text:
        detail = text.split("DefaultCPUAllocator: ")[-1][:160] or "MemoryError"
        return f"out of memory ({detail}); use smaller sizes (--batch_size, widths, dataset sizes)"
    return None
