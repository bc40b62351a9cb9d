"""The platform store: projects, jobs, runs, users, API keys and audit events (SQLAlchemy)."""
