"""Hypothesis strategies for DynamoDB items whose attributes mostly keep one type (so they
get typed snapshot columns), with the spellings a typed column cannot give back: numbers
as "1.50", "1E+2" or "-0", non-canonical base64, NULL values, mixed types."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from backup_lambda.ddbjson import Item

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "-1", "1.5", "1.50", "100", "1E+2", "-0", "0.001", "10.10"]),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6
    ).map(str),
    st.integers(-(10**37), 10**37).map(str),
)
BLOBS = st.one_of(
    st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode("ascii")),
    st.sampled_from(["AB==", "AAB=", "/x=="]),  # decodable, not canonical (padding bits)
)
SCALARS: dict[str, Any] = {
    "S": TEXT,
    "N": NUMBERS,
    "B": BLOBS,
    "BOOL": st.booleans(),
}


def value(tag: str) -> st.SearchStrategy[dict[str, Any]]:
    if tag == "NULL":
        return st.just({"NULL": True})
    if tag == "SS":
        return st.sets(TEXT, min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)})
    if tag == "M":
        return st.dictionaries(
            TEXT, st.one_of(SCALARS["S"].map(lambda s: {"S": s})), max_size=2
        ).map(lambda m: {"M": m})
    if tag == "L":
        return st.lists(NUMBERS.map(lambda n: {"N": n}), max_size=3).map(lambda items: {"L": items})
    return SCALARS[tag].map(lambda v: {tag: v})


# Attribute name -> the type its values usually have (sometimes NULL, sometimes another).
ATTRIBUTES = {
    "s": "S",
    "n": "N",
    "b": "B",
    "flag": "BOOL",
    "tags": "SS",
    "m": "M",
    "l": "L",
    "Case": "S",
    "case": "N",
    "é x": "S",
}


@st.composite
def items(draw: st.DrawFn, count: int = 6) -> list[Item]:
    """`count` items with keys pk (S) and sk (N), all distinct."""
    result = []
    for i in range(count):
        item: Item = {"pk": {"S": f"p{i % 3}"}, "sk": {"N": str(i)}}
        for name, tag in ATTRIBUTES.items():
            roll = draw(st.integers(0, 9))
            if roll == 0:
                continue  # missing
            if roll == 1:
                item[name] = {"NULL": True}
            elif roll == 2 and name in {"n", "s"}:
                item[name] = draw(value("S" if tag == "N" else "N"))  # a mixed-type attribute
            else:
                item[name] = draw(value(tag))
        result.append(item)
    return result
