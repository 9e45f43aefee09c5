"""The research tests use the product tests' fixtures (FER+ from ../shared, real photos, models)."""

from tests.conftest import *  # noqa: F401,F403
