"""Config sections: one module per section, each with a ``Settings`` dataclass (types only).

Values live in ``pipeline/defaults/<section>.yaml``; ``root`` holds the top-level keys.
"""
