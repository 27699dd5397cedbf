"""Helpers of the integration tests, one module per thing they help with (env, topics, workers, models, lake)."""
