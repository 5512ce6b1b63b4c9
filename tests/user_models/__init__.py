"""A user's own model code, outside inhouse: builders that ``inhouse models register
--builder tests.user_models.nets:...`` accepts once ``tests.user_models`` is an allowed prefix.

Importable on the test cluster's workers and replicas: they inherit ``PYTHONPATH`` (the repo
root) from the process that started the cluster, as ``tests.toy_kind`` is.
"""
