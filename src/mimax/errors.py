"""User-facing errors. The CLI prints ``mimax: error: <message>`` (one line) and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (flags, paths, data, checkpoints): no traceback is shown."""


class DataError(UserError):
    """Data that is missing or not in the expected layout; the message names the path and the layout."""


class CollapseStopped(Exception):
    """``--stop_on_collapse`` ended a run whose embeddings collapsed; the CLI exits with code 4. The epoch's
    checkpoint is kept and the run is resumable."""


class TrainingDiverged(Exception):
    """Training produced a non-finite loss, gradient or weight (``--on_nan``); the CLI exits with code 3."""
