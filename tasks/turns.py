"""Turn tasks: decode the wake-up, call the pipeline. Nothing else lives here."""

from __future__ import annotations

from state.models import ConversationRef
from tasks.app import app
from workers.pipeline import drain_conversation


@app.task(name="turns.process")  # type: ignore[untyped-decorator]
def process(tenant: str, conversation_id: int, channel: str) -> str:
    """Drain the conversation if nobody else holds it; the return value is for Flower."""
    return drain_conversation(app.runtime, ConversationRef(tenant, conversation_id), channel).value
