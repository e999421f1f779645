"""accounts.balance and an index on owner

Revision ID: 0002
Revises: 0001
Create Date: 2024-01-02 00:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant (immutable) default: existing rows get 0 on every node.
    op.add_column('accounts', sa.Column('balance', sa.Numeric(), nullable=False,
                                        server_default='0'))
    op.create_index('accounts_owner_idx', 'accounts', ['owner'])


def downgrade() -> None:
    op.drop_index('accounts_owner_idx', table_name='accounts')
    op.drop_column('accounts', 'balance')
