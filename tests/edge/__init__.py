"""Edge agent tests."""
