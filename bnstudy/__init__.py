"""bnstudy: an experiment harness for studying Batch Normalization."""
__version__ = "0.1.0"
