"""A toy model kind, defined outside inhouse, to show that adding a kind needs no edit in
``serve/``: a length threshold over texts ("short" / "long"), one trainable scale.

Registered by the test that uses it::

    register(ModelKind("toy", ("toy_arch",), "tests.toy_kind"))
"""
