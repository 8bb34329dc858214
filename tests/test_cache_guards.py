from __future__ import annotations

import pytest

from router.cache import compatible

BENIGN = [
    ("What is the capital of France?", "what is the capital of france"),
    ("What is the capital of France?", "Please answer: What is the capital of France?"),
    ("Turn on the light", "TURN ON THE LIGHT!!"),
    ("I don't like 1,000 apples.", "I do not like 1000 apples"),
    ('Translate "good morning" to Spanish', 'translate  "Good Morning"  to spanish.'),
    ("Tom has two dogs and 3 cats.", "Hi, Tom has 2 dogs and 3 cats"),
]

NEAR_MISSES = [
    ("Turn on the light", "Turn off the light"),
    ("Tom has 3 apples and buys 5 more.", "Tom has 3 apples and buys 6 more."),
    ("Tom has 3 apples and 5 pears.", "Tom has 5 apples and 3 pears."),
    ("Tom has three apples.", "Tom has four apples."),
    ("Which of these is a mammal?", "Which of these is not a mammal?"),
    ("Which statement is correct?", "Which statement is incorrect?"),
    ("Is this outcome likely?", "Is this outcome unlikely?"),
    ("What is the capital of France?", "What is the capital of Spain?"),
    ('Translate "good morning" to Spanish', 'Translate "good night" to Spanish'),
    ("Pick one.\nA. Paris\nB. Rome", "Pick one.\nA. Rome\nB. Paris"),
    ("Pick one.\nA. red\nB. blue", "Pick one.\nA. red\nB. green"),
]


@pytest.mark.parametrize(("cached", "new"), BENIGN)
def test_benign_variants_pass(cached: str, new: str) -> None:
    assert compatible(cached, new)
    assert compatible(new, cached)


@pytest.mark.parametrize(("cached", "new"), NEAR_MISSES)
def test_near_misses_are_refused(cached: str, new: str) -> None:
    assert not compatible(cached, new)
    assert not compatible(new, cached)
