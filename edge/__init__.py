"""The line agent: capture, spool, publish, show the verdict."""
