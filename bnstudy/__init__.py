"""bnstudy: an experiment harness for studying Batch Normalization."""
# 0.2.0: measurements fixed 2026-11-25, with the rules' rewrite: init schemes leave the classifier
# alone, probes replay the training forward's randomness and log relative ICS; runs made before are
# flagged where it matters
__version__ = "0.2.0"
