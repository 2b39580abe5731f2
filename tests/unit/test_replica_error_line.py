"""The reason a replica did not start, as its events and page say it: the exception line
of its scoring script's traceback, wherever the script's own output lands around it
(Docker reads stdout and stderr apart: their lines do not keep their order)."""

from __future__ import annotations

import pytest

from compute.controllers.nodes import error_line

FRAMES = [
    "score-server: init() failed, the replica does not start:",
    "Traceback (most recent call last):",
    '  File "/hangar/serve/score_server.py", line 183, in main',
    "    module.init()",
    '  File "/code/score.py", line 4, in init',
    '    raise ValueError("the weights are corrupt")',
]
ERROR = "ValueError: the weights are corrupt"


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([*FRAMES, ERROR], id="in order"),
        pytest.param(["loading the weights", *FRAMES, ERROR], id="stdout first"),
        pytest.param([*FRAMES, ERROR, "loading the weights"], id="stdout last"),
        pytest.param([*FRAMES[:2], "loading the weights", *FRAMES[2:], ERROR], id="amid frames"),
        pytest.param([*FRAMES, "loading the weights", ERROR], id="just before the error"),
    ],
)
def test_the_exception_line_is_found_wherever_stdout_lands(lines: list[str]) -> None:
    assert error_line("\n".join(lines)) == ERROR


def test_a_chained_exception_names_the_last_one() -> None:
    output = [
        *FRAMES,
        "KeyError: 'weights'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        *FRAMES[1:],
        ERROR,
    ]
    assert error_line("\n".join(output)) == ERROR


def test_without_a_traceback_the_last_line_and_without_output_a_word() -> None:
    assert error_line("starting\nKilled\n") == "Killed"
    assert error_line("") == "it wrote nothing"
    # An exception without a message is named alone.
    assert error_line("\n".join([*FRAMES, "MemoryError"])) == "MemoryError"
