"""create accounts with two rows

Revision ID: 0001
Revises:
Create Date: 2024-01-01 00:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    accounts = op.create_table(
        'accounts',
        # autoincrement=False: a plain bigint key, not bigserial.
        sa.Column('id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('owner', sa.Text(), nullable=False),
        sa.Column('created', sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.bulk_insert(accounts, [
        {'id': 1, 'owner': 'alice'},
        {'id': 2, 'owner': 'bob'},
    ])


def downgrade() -> None:
    op.drop_table('accounts')
