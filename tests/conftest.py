import os

from hypothesis import HealthCheck, settings

# CI runs a bounded number of examples on a 2-core machine; `HYPOTHESIS_PROFILE=deep` digs further.
settings.register_profile("default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
