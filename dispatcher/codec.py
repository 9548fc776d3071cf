"""Text as Shaozi reads it from Redis and writes it as JSON.

JSON text as Shaozi writes it: UTF-8 as is (Chinese stays readable), no spaces.

The encoder is built once: ``json.dumps`` with options builds a new one on every call, which
showed up as the largest cost of planning and intake.
"""

import json

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def text(value):
    """A Redis reply as ``str`` (replies come as bytes unless decoded); None stays None."""
    return value.decode() if isinstance(value, bytes) else value
