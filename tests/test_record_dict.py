"""`DecisionRecord.to_dict` is written out by hand for speed; it must stay the record."""

from __future__ import annotations

from dataclasses import fields

from router.outcomes.record import _OPTIONAL, DecisionRecord


def _generic(record: DecisionRecord) -> dict[str, object]:
    data = {f.name: getattr(record, f.name) for f in fields(record)}
    return {k: v for k, v in data.items() if not (k in _OPTIONAL and v is None)}


def test_to_dict_has_every_field_in_order_when_all_are_set() -> None:
    record = DecisionRecord(request_id="r", ts=1.0, tenant="t", model="m", stream=True)
    for i, f in enumerate(fields(record)):
        if getattr(record, f.name) is None:
            setattr(record, f.name, f"value-{i}")
    data = record.to_dict()
    assert list(data) == [f.name for f in fields(record)]
    assert data == _generic(record)


def test_to_dict_leaves_out_unset_optional_fields_only() -> None:
    record = DecisionRecord(request_id="r", ts=1.0, tenant="t", model="m", stream=False)
    data = record.to_dict()
    assert list(data) == list(_generic(record))
    assert data == _generic(record)
    assert "route" in data and data["route"] is None  # not optional: always written


def test_to_dict_copies_the_lists() -> None:
    record = DecisionRecord(request_id="r", ts=1.0, tenant="t", model="m", stream=False)
    record.targets.append("a")
    data = record.to_dict()
    record.targets.append("b")
    record.tried.append("c")
    assert data["targets"] == ["a"] and data["tried"] == []
