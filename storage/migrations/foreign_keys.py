"""For migrations that drop (or, going down, restore) foreign keys: 0006, 0009."""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

#: (column, referenced table, PostgreSQL's default constraint name)
ForeignKeys = Sequence[tuple[str, str, str]]


def set_foreign_keys(
    table: str, keys: ForeignKeys, rebuilt: Callable[[bool], sa.Table], *, present: bool
) -> None:
    """Drop (``present=False``) or restore ``keys`` on ``table``.

    SQLite cannot alter a constraint: the table is rebuilt from ``rebuilt(present)``, its
    whole definition with or without the keys (SQLite's constraints are unnamed).
    """
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(table, copy_from=rebuilt(present), recreate="always"):
            pass
        return
    for column, referenced, name in keys:
        if present:
            op.create_foreign_key(name, table, referenced, [column], ["id"])
        else:
            op.drop_constraint(name, table, type_="foreignkey")
