"""``mashangyi research plan NUMBER`` and ``research show NUMBER``: the research plan (商前调研)
published from the command line, as the convener does on the review card, and what the
research has so far (plan, people named and their confirmations, findings, files, or why
there is none). Parsing and formatting only: ``Lifecycle.apply`` and workflow/research.py
decide."""

from __future__ import annotations

import argparse
import json

from bot.cli.common import CliError, when, with_services
from bot.config import Config
from bot.services import Services
from storage.db import transaction
from storage.models import Person, Topic
from workflow.errors import WorkflowError
from workflow.permissions import load_actor
from workflow.queries import topic_record
from workflow.research import research_record
from workflow.texts import label


async def cmd_research_plan(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with transaction(services.sessions) as session:
            record = await topic_record(session, args.number)
            if record is None:
                raise CliError(f"no topic numbered {args.number!r}")
            if await session.get(Person, args.by) is None:
                raise CliError(f"no person with id {args.by} (see `roles list`)")
            topic = await session.get(Topic, record.topic.id)
            assert topic is not None
            fields = {"plan": args.plan, "research_when": args.when, "research_place": args.where}
            try:
                await services.lifecycle.apply(
                    session,
                    topic,
                    "plan_research",
                    await load_actor(session, args.by),
                    **{k: v for k, v in fields.items() if v},
                )
            except WorkflowError as refusal:
                raise CliError(refusal.message) from None
            print(f"{topic.number}: {label('states', topic.state)}")
        return 0

    return await with_services(config, args, work)


async def cmd_research_show(config: Config, args: argparse.Namespace) -> int:
    async def work(services: Services) -> int:
        async with services.sessions() as session:
            found = await research_record(session, args.number)
        if found is None:
            raise CliError(f"no topic numbered {args.number!r}")
        people = [
            {"name": name, "role": role, "confirmed_at": at.isoformat() if at else None}
            for name, role, at in found.participants
        ]
        if args.json:
            shown = {
                "number": found.topic.number,
                "state": found.topic.state,
                "plan": found.plan,
                "skipped": found.skipped,
                "findings": found.findings,
                "files": found.files,
                "participants": people,
            }
            print(json.dumps(shown, ensure_ascii=False, indent=2))
            return 0
        print(f"{found.topic.number}  {found.topic.title}  [{label('states', found.topic.state)}]")
        for key in ("plan", "research_when", "research_place"):
            if found.plan.get(key):
                print(f"  {label('fields', key)}: {found.plan[key]}")
        if found.skipped:
            print(f"  {label('actions', 'skip_research')}: {found.skipped}")
        for name, role, at in found.participants:
            print(f"  - {name} ({label('roles', role)}) confirmed {when(at)}")
        if found.findings:
            print(f"  {label('fields', 'findings')}: {found.findings} ({found.files} files)")
        return 0

    return await with_services(config, args, work)
