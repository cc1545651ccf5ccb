"""Routes of the event stream: changes, health transitions, ring rebuilds, starts, reconciles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ControllerDep
from api.schemas import Events

router = APIRouter(tags=["events"])


@router.get("/events")
def events(controller: ControllerDep, since: Annotated[int, Query(ge=0)] = 0,
           wait: Annotated[float, Query(ge=0, le=60)] = 0) -> Events:
    """The events after cursor `since` (their `seq`), oldest first, from a ring of the last
    1024; a long poll: with none yet, waits up to `wait` seconds for one. Ask again with
    `next` (docs/api.md#events)."""
    found, cursor = controller.events.since(since, wait)
    body: dict[str, Any] = {"events": found, "next": cursor}
    return Events.model_validate(body)
