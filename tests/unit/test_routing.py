from __future__ import annotations

from tasks.routing import TURNS_CHAT, TURNS_VOICE, turn_queue


def test_chat_channels_go_to_the_chat_queue_and_voice_to_its_own() -> None:
    assert turn_queue("generic") == TURNS_CHAT
    assert turn_queue("slack") == TURNS_CHAT
    assert turn_queue("voice") == TURNS_VOICE
