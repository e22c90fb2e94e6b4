"""Shared fixtures live in tests/fixtures/; each module there is a pytest plugin."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.model",
    "tests.fixtures.download",
    "tests.fixtures.phi4_tokenizer",
    "tests.fixtures.edge",
    "tests.fixtures.browser",
    "tests.fixtures.drills",
]
