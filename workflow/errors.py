"""Refusals. Each carries a Chinese message fit to show the person who asked."""

from __future__ import annotations

from typing import Any

from workflow.texts import text


class WorkflowError(Exception):
    """Base of every refusal; ``code`` is stable for programs, ``message`` is for people."""

    code = "workflow_error"

    def __init__(self, key: str, **params: Any) -> None:
        self.key = key
        self.params = params
        self.message = text("errors", key, **params)
        super().__init__(self.message)


class UnknownAction(WorkflowError):
    code = "unknown_action"


class NotPermitted(WorkflowError):
    code = "not_permitted"


class WrongState(WorkflowError):
    code = "wrong_state"


class Conflict(WorkflowError):
    """Someone else changed the topic between reading it and acting on it."""

    code = "conflict"


class InvalidField(WorkflowError):
    code = "invalid_field"


class MissingField(InvalidField):
    code = "missing_field"
