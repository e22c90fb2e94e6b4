"""`inspector doctor`: check one host's settings against the services they name."""

from inspector.doctor.checks import CHECKS, SPECS, Finding, Role, Status, run_checks

__all__ = ["CHECKS", "SPECS", "Finding", "Role", "Status", "run_checks"]
