"""Data-stage fixtures: tiny data directories written to tmp_path, one per input layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# A small generic catalog. Hand-computed facts the tests check:
# items in file order 007, i2, i3, i4 (i4 has no interactions); 'year' is numeric, so the default
# text columns are title (first) then description. Users: u1, u9 from users.csv, then u2 (first
# seen in interactions row 1) and u3 (row 4). Rows 2 and 6 of u1 tie on timestamp 1614556800.
ITEMS_CSV = """item_id,year,description,title
007,1962,"A spy, a villain",Dr. No
i2,1999,Hackers and kung fu,The Matrix
i3,2001,A shy waitress in Paris,Amélie
i4,2020,Nobody has seen this,Cold Item
"""
INTERACTIONS_CSV = """user_id,item_id,timestamp,weight
u2,i2,2021-03-01T00:00:00Z,1.0
u1,007,1614556800,2.0
u1,i2,1614556900,1.0
u3,i3,2021-03-01 00:01:00,1.0
u2,007,1614556700,0.5
u1,i3,1614556800,1.0
"""
USERS_CSV = """user_id,bio
u1,likes spy films
u9,new here
"""
# (user_idx, item_idx, timestamp, weight, row) sorted by (user_idx, timestamp, row)
EXPECTED_INTERACTIONS = [
    (0, 0, 1614556800, 2.0, 2),
    (0, 2, 1614556800, 1.0, 6),
    (0, 1, 1614556900, 1.0, 3),
    (2, 0, 1614556700, 0.5, 5),
    (2, 1, 1614556800, 1.0, 1),
    (3, 2, 1614556860, 1.0, 4),
]


@pytest.fixture
def write_dir(tmp_path: Path) -> Callable[..., Path]:
    """write_dir({'items.csv': text or bytes, ...}) -> a fresh directory holding those files."""
    counter = iter(range(1000))

    def write(files: dict[str, str | bytes], encoding: str = "utf-8") -> Path:
        directory = tmp_path / f"data{next(counter)}"
        directory.mkdir()
        for name, content in files.items():
            raw = content if isinstance(content, bytes) else content.encode(encoding)
            (directory / name).write_bytes(raw)
        return directory

    return write


@pytest.fixture
def catalog_files() -> dict[str, str]:
    """The generic catalog above, as file name -> CSV text (tests edit a copy)."""
    return {"items.csv": ITEMS_CSV, "interactions.csv": INTERACTIONS_CSV, "users.csv": USERS_CSV}


@pytest.fixture
def catalog_interactions() -> list[tuple]:
    """The canonical interactions the generic catalog must load to."""
    return list(EXPECTED_INTERACTIONS)
