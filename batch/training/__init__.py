"""The pieces of the offline trainer (`batch.train`): data, loop, checkpoints, evaluation."""
