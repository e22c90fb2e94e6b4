"""Tests of `inspector doctor`."""
