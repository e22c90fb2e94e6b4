"""The canary: golden parts re-sent to every live worker, each answer judged as reviewed."""

from inspector.canary.service import Canary

__all__ = ["Canary"]
