"""Text a node wrote, made safe to show: what a tenant's process prints is hostile. The
template escapes HTML; this removes what escaping does not: terminal escape sequences
(colours, cursor moves, window titles), other control characters, and the bidirectional
overrides that make text read differently from what it is ("Trojan Source")."""

from __future__ import annotations

import re

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-byte ESC sequences.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# C0 controls but tab and newline, DEL, C1 controls, bidirectional embeddings, overrides
# and isolates.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def readable(data: bytes) -> str:
    """UTF-8 (undecodable bytes shown as U+FFFD), lines ended by \\n, no control
    character but tab and newline."""
    text = data.decode("utf-8", errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return CONTROLS.sub("", ESCAPES.sub("", text))
