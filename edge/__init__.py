"""The line agent: capture, spool, publish, show the verdict.

`agent` wires the parts: `capture` (OpenCV cameras, video files, photo files), `audio`
(voice notes through a sounddevice-shaped stream), `triggers` (HTTP, MQTT, keys), `folder`
(the watched folder), `spool` (the SQLite outbox), `publisher` (spool → broker, QoS 1),
`display` (verdicts, hook, timeouts), `terminal` (the station's screen) and `cli`.
"""
