"""A signed-in user's private history of analyses (issue 17).

* :mod:`skin.history.store`: the entries, behind one database URL
  (``SKINLENS_DB``; SQLite by default), schema by the Alembic migrations in
  ``migrations/``; every query is scoped to one user.
* :mod:`skin.history.users`: the self-hosted users file (``SKINLENS_USERS``)
  with salted scrypt hashes; ``python -m skin.users add NAME`` fills it.
* :mod:`skin.history.verdict`: improved / deteriorated / no meaningful change /
  not comparable, against each score's own test-retest noise.
"""
