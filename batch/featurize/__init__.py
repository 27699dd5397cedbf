"""Pure silver -> gold transforms: features and training sets."""
