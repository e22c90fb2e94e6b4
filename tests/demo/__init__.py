"""Tests of the demo line."""
