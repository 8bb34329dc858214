"""The numeric checks of a chat body report the first invalid name in one fixed order."""

from __future__ import annotations

import itertools

import pytest

from router.errors import RouterError
from router.ingress.request import chat_request

ORDER = [
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "max_tokens",
    "max_completion_tokens",
]


@pytest.mark.parametrize("names", [*itertools.combinations(ORDER, 2), tuple(ORDER)])
def test_first_invalid_in_order_is_reported(names: tuple[str, ...]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update({name: "x" for name in reversed(names)})  # insertion order must not matter
    with pytest.raises(RouterError) as info:
        chat_request(body)
    assert info.value.param == names[0]


def test_valid_and_null_values_pass() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
        "top_p": None,
        "n": 2,
        "max_tokens": None,
    }
    assert chat_request(body).model == "m"
