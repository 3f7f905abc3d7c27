"""Errors the `pipeline` command tells apart by exit code, in a module light enough for the CLI
to import at start-up."""


class ShardFailedError(RuntimeError):
    """A shard did not finish: a bug in the stage, or too many of its items failed. The command
    exits 1 (2 is for a command that could not start: bad settings, a locked run_dir)."""


class WorkerSetupError(ValueError):
    """A worker could not set its stage up (a device, weights or backbone setting that does not
    fit the node it runs on): a setting to change, so the command exits 2 like other bad settings."""
