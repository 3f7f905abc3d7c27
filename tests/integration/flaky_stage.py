"""A stage whose worker process dies the first time it meets each shard (for retry tests)."""

import os
from pathlib import Path

import pyarrow as pa

from stages.ingest import IngestStage


class DyingOnceIngest(IngestStage):
    def process(self, batch: pa.Table) -> pa.Table:
        flags = Path(self.cfg.run_dir) / "flags"
        flags.mkdir(exist_ok=True)
        flag = flags / batch["sources"].column("image_id")[0].as_py()
        if not flag.exists():
            flag.touch()
            os._exit(1)  # the worker dies as if killed
        return super().process(batch)


class BuggyIngest(IngestStage):
    """A stage with a bug: every batch raises, and leaves a flag per call (to count retries)."""

    def process(self, batch: pa.Table) -> pa.Table:
        flags = Path(self.cfg.run_dir) / "calls"
        flags.mkdir(exist_ok=True)
        (flags / f"{os.getpid()}-{batch['sources'].column('image_id')[0].as_py()}").touch()
        return self.no_such_attribute
