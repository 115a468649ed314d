"""Persistence: SQLModel models, one session per request, small query functions, migrations."""
