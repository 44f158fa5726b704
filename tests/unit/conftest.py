"""Hypothesis profiles: `default` keeps `make test` fast; DRILLKIT_FUZZ=1 runs the long fuzz
(thousands of generated scenario files) before a release."""

import os

from hypothesis import settings

settings.register_profile("default", max_examples=150)
settings.register_profile("fuzz", max_examples=5000)
settings.load_profile("fuzz" if os.environ.get("DRILLKIT_FUZZ") else "default")
