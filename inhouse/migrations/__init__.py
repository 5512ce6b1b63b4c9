"""Alembic migrations of inhouse's own tables (run by :mod:`inhouse.schema`, never by hand).

``versions/`` holds one script per schema change; ``0001`` is the schema the last release
without migrations made (commit 7a7d38b). Data-set row tables (``ds_*``) and any other table
in the database are not inhouse's to migrate and are left alone.
"""
