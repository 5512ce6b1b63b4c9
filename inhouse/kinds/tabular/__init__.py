"""The tabular kind: MLP classifiers on rows of numeric features."""
