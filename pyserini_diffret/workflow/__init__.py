"""The Pyserini-native workflow: readers, one-pass encoding store, MaxSim search, fusion, evaluation, run.

Modules are imported on use (``python -m pyserini_diffret.encode``/``search_multi``/``fusion``/``run``).
"""
