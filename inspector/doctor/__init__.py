"""`inspector doctor`: check one host's settings against the services they name."""

from inspector.doctor.checks import CHECKS, Finding, Status, run_checks

__all__ = ["CHECKS", "Finding", "Status", "run_checks"]
