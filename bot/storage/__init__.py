"""Database access: models, engine, repositories and Alembic migrations."""
