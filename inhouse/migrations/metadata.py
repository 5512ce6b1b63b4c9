"""Every table inhouse defines: the metadata the migrations must match (tooling and tests).

It imports each table module, so it lives here, beside the migrations, rather than in
:mod:`inhouse.schema`, which every layer imports at run time and which must not depend on the
packages that own the tables.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from inhouse.db import Base


def model_metadata() -> MetaData:
    """Every table inhouse defines (the metadata the migrations must match).

    Imports each table module, so it is for tooling and tests; nothing at run time needs it.
    """
    import inhouse.access.records  # noqa: F401
    import inhouse.canary.active  # noqa: F401
    import inhouse.canary.traffic  # noqa: F401
    import inhouse.coordinator.state  # noqa: F401
    import inhouse.data.consumed  # noqa: F401
    import inhouse.data.table  # noqa: F401
    import inhouse.privacy.records  # noqa: F401
    import inhouse.registry.records  # noqa: F401

    return Base.metadata
