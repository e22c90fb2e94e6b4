"""The MQTT worker service: consume, validate, batch, infer, commit, publish, then ack."""

from inspector.worker.service import Worker

__all__ = ["Worker"]
