"""JSON text as Shaozi writes it: UTF-8 as is (Chinese stays readable), no spaces.

The encoder is built once: ``json.dumps`` with options builds a new one on every call, which
showed up as the largest cost of planning and intake.
"""

import json

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
