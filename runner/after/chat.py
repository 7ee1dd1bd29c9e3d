"""The loop of `recipe chat`: read a line, answer it with the history, repeat.

Pure: reading, answering and writing are passed in, so the loop is tested without a
terminal. `/reset` clears the history, `/exit` (or end of input) ends the chat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESET, EXIT = "/reset", "/exit"
HELP = f"Type a message; {RESET} clears the conversation, {EXIT} (or Ctrl-D) ends it."

Messages = list[dict[str, Any]]


def chat_loop(
    read: Callable[[], str | None],
    reply: Callable[[Messages], str],
    write: Callable[[str], None],
) -> Messages:
    """Run the conversation until /exit or end of input; returns the final history.

    `read` returns the next line, or None at end of input; `reply` gets the history
    ending in the new user turn and returns the assistant's answer (it may have shown
    it already, e.g. streamed; `write` is only used for the loop's own notes).
    """
    history: Messages = []
    while True:
        line = read()
        if line is None:
            return history
        text = line.strip()
        if not text:
            continue
        if text == EXIT:
            return history
        if text == RESET:
            history = []
            write("(conversation cleared)")
            continue
        if text.startswith("/"):
            write(f"(unknown command {text}; {HELP})")
            continue
        history = [*history, {"role": "user", "content": text}]
        answer = reply(history)
        history = [*history, {"role": "assistant", "content": answer}]
