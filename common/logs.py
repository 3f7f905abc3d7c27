"""Log settings every entry point (CLIs, Ray workers) applies before the model libraries load."""

from __future__ import annotations

import logging


def quiet_optional_kernel_warnings() -> None:
    """Silence bitsandbytes' import-time warnings about optional CPU kernels it cannot fetch
    (nothing here quantizes; pyiqa installs it and diffusers imports it when present): its own,
    and, offline (HF_HUB_OFFLINE=1, as in the Docker image), the `kernels` package's
    "Skipping publisher trust check" for the same fetch. Errors still show."""
    for name in ("bitsandbytes", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
