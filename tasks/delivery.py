"""Delivery tasks: send a conversation's due replies, in seq order."""

from __future__ import annotations

from state.models import ConversationRef
from tasks.app import app
from workers.delivery import deliver_conversation


@app.task(name="delivery.send")  # type: ignore[untyped-decorator]
def send(tenant: str, conversation_id: int) -> str:
    return deliver_conversation(app.runtime, ConversationRef(tenant, conversation_id)).value
