"""Adapting a model to the user's own classes: chips from labelled polygons, features from the
base model's graph, a softmax head fitted in numpy (``linear``), a new model written (``adapt``).

The head the adapted model runs with is the model's own (``model/head.py``): every face runs an
adapted model like any other.
"""
