"""Alembic environment: migrations run on the connection :func:`skin.history.store.migrate` hands in.

There is no ``alembic.ini``: the store upgrades its own database to ``head``
when it is opened, so a deployment never runs Alembic by hand.
"""

from alembic import context

from skin.history.store import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
