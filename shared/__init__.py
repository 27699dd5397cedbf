"""What batch and stream must agree on: settings, schemas, feature code, model I/O."""
