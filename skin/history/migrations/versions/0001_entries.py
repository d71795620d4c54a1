"""entries: one saved analysis per row, scoped by user

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("noise", sa.JSON(), nullable=False),
        sa.Column("photo_type", sa.String(32), nullable=False),
        sa.Column("tone_bucket", sa.String(16), nullable=True),
        sa.Column("quality_flags", sa.JSON(), nullable=False),
        sa.Column("photo", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_entries_user_saved_at", "entries", ["user", "saved_at"])


def downgrade() -> None:
    op.drop_index("ix_entries_user_saved_at", table_name="entries")
    op.drop_table("entries")
