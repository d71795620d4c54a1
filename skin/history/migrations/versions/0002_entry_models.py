"""entries.models: the version of each model that scored the entry

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: entries saved before this revision have no record of their models' versions
    op.add_column("entries", sa.Column("models", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("entries", "models")
