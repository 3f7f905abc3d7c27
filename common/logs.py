"""Log settings every entry point (CLIs, Ray workers) applies before the model libraries load."""

from __future__ import annotations

import logging


def quiet_optional_kernel_warnings() -> None:
    """Silence bitsandbytes' import-time warning about optional CPU kernels it cannot fetch
    (nothing here quantizes; pyiqa installs it and diffusers imports it when present). Errors
    still show."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
