"""Migration scripts, oldest first (Alembic reads them; they are not imported)."""
