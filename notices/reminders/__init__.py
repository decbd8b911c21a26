"""Scheduled reminders: periodic sweeps over the database that nudge, escalate and remind.

A kind of reminder is one ``Reminder`` record in ``REMINDERS``:

    Reminder("review.nudge", find=overdue_reviews, to=Responsible(), repeat=Repeat.WORKDAY)

- ``find``: which things are due now (a query: overdue review steps, quiet rooms…);
- ``to``: who is told about each (the people responsible for the step, the submitter, the
  supervising district's supervisors, a room's conveners);
- ``repeat``: once per occurrence (a review step, a year), or at most once per working day
  while it stays due;
- ``digest``: one message per person listing everything due for them, instead of one each;
- ``office_hours``: only on working days within ``[reminders] work_start``–``work_end``
  (China time, 调休 Saturdays included) — a meeting reminder would turn this off;
- the text: ``templates/reminders/<name>.txt``.

Meeting reminders, "is it solved?" and the like are a finder and a record here, nothing more.

**The database is the only memory.** Every reminder given is a ``reminders_sent`` row with
a unique key (kind, period, subject, occurrence, person). A sweep inserts the rows first
(``INSERT … ON CONFLICT DO NOTHING RETURNING``) and writes the outbox messages only for the
rows it actually inserted, in the same transaction, with outbox idempotency keys derived
from those rows. So:

- a restart, or a sweep that fails half-way (its transaction rolls back), loses nothing:
  the next sweep finds the same things due and gives what was not given yet;
- two processes sweeping one PostgreSQL database cannot both give a reminder: the second
  insert of a key waits for the first transaction and then conflicts. That unique key is
  the guarantee. On top of it each kind's transaction takes a transaction-scoped advisory
  lock with ``pg_try_advisory_xact_lock``; a process that does not get it skips that kind
  for this round (the holder is doing it), so concurrent workers do not do the work twice
  or queue up behind each other's row locks. The lock needs no clean-up: it ends with the
  transaction, also when a process dies;
- SQLite: one process is assumed (the embedded set-up). A second one could not double-send
  either (same unique key), but its sweeps might fail with "database is locked" and retry.

Each kind has its own transaction. On PostgreSQL the kinds of one sweep run at the same
time, so the messages of different kinds come in no particular order; on SQLite (one
writer) one after the other, in the order of ``REMINDERS``.
"""

from notices.reminders.finders import REMINDERS
from notices.reminders.kinds import (
    Reminder,
    ReminderSettings,
    Repeat,
    Submitter,
    Sweep,
)
from notices.reminders.sweeper import Sweeper, SweepReport

__all__ = [
    "REMINDERS",
    "Reminder",
    "ReminderSettings",
    "Repeat",
    "Submitter",
    "Sweep",
    "SweepReport",
    "Sweeper",
]
