"""The sweep point and its label (bench.results.point): the `point` column's values."""

from __future__ import annotations

import pytest

from bench.results.point import Point


@pytest.mark.parametrize("point", [
    Point(), Point(1000, 2, 0.0), Point(5000, 4, 50.0), Point(0, 1, 0.5), Point(10_000, 2, 1e-3),
])
def test_label_round_trips(point: Point) -> None:
    assert Point.parse(point.label) == point


def test_labels_read_as_the_brief_says() -> None:
    assert Point(1000, 2, 0.0).label == "bg1000x2c0"
    assert Point(500, 3, 2.5).label == "bg500x3c2.5"
    assert Point().label == "bg0x2c0"


def test_old_runs_empty_label_is_no_background() -> None:
    assert Point.parse("") == Point()


@pytest.mark.parametrize("label", [
    "bg1000", "1000x2c0", "bgx2c0", "bg-1x2c0", "bg10x2c-1", "bg10x2cnan", "bg10x2cinf",
    "bg10x2c0 ", "BG10x2c0", "bg10x2c", "bg1.5x2c0",
])
def test_parse_refuses_what_label_never_writes(label: str) -> None:
    with pytest.raises(ValueError, match="not a sweep point label"):
        Point.parse(label)
