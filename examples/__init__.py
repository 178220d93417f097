"""Example models and an example production-readiness suite (not part of the package)."""
