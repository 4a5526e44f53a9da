"""`validate_release(card_digests_of_same_bytes=True)`: what the build's own validation may skip, and what not.

The build that has just written a release may take a part's digest from its card record when the
file's bytes are the ones recorded; any other part is hashed, and `voicetone validate` (the default)
never trusts the card.
"""

import json

import pyarrow.parquet as pq

from manifests import io as mio
from manifests import uri as fs
from manifests.parts import part_uri
from manifests.schema import MANIFEST_NAMES, UTTERANCES
from manifests.validate import validate_release
from manifests.validate_part import check_part
from tests.manifests.release_factory import make_tables, write_release_v2


def _card(paths):
    return json.loads(fs.read_bytes(paths.card_json))


def test_card_digests_of_unchanged_parts_give_the_same_verdict_and_digests(tmp_path):
    paths = write_release_v2(str(tmp_path / "out"))
    card = _card(paths)
    assert validate_release(paths.root).problems == []
    assert validate_release(paths.root, card_digests_of_same_bytes=True).problems == []
    for i in range(3):
        known = {n: (r["sha256"], r["content_sha256"]) for n in MANIFEST_NAMES
                 for r in card["manifests"][n]["parts"] if r["part"] == i}
        hashed = check_part(paths.root, i, card, "2", 3, release_name="r2")
        taken = check_part(paths.root, i, card, "2", 3, release_name="r2", known=known)
        assert taken.digests == hashed.digests
        assert taken.problems == hashed.problems == []


def test_a_part_rewritten_with_other_rows_is_hashed_and_caught(tmp_path):
    """Other bytes than the card lists: the part's rows are hashed, and they differ from the card."""
    paths = write_release_v2(str(tmp_path / "out"))
    uri = part_uri(paths.root, UTTERANCES, 1)
    table = pq.read_table(uri)
    column = table.column("transcript").to_pylist()
    column[0] = (column[0] or "") + " edited"
    pq.write_table(table.set_column(table.schema.get_field_index("transcript"), "transcript", [column]), uri)
    for trusted in (False, True):
        problems = validate_release(paths.root, card_digests_of_same_bytes=trusted).problems
        assert any("part content_sha256 differs from the part's rows: utterances/00001" in p for p in problems), problems
        assert any("content_sha256 mismatch" in p for p in problems)


def test_voicetone_validate_does_not_trust_a_forged_card(tmp_path):
    """A card whose part digest and identity were both rewritten, files untouched: the default
    recomputes and reports it; only the build's own call (just-written card) would take it."""
    paths = write_release_v2(str(tmp_path / "out"))
    card = _card(paths)
    card["manifests"][UTTERANCES]["parts"][0]["content_sha256"] = "0" * 64
    from manifests.parts import card_digests, release_digest

    card["content_sha256"] = release_digest(card_digests(card))
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    problems = validate_release(paths.root).problems
    assert any("part content_sha256 differs from the part's rows: utterances/00000" in p for p in problems), problems
    assert validate_release(paths.root, card_digests_of_same_bytes=True).problems == []


def test_a_v1_release_is_always_hashed(tmp_path):
    from tests.manifests.release_factory import write_release

    write_release(str(tmp_path / "v1"), make_tables())
    paths = mio.resolve_release(str(tmp_path / "v1"))
    assert paths.layout() == "1"
    assert validate_release(paths.root, card_digests_of_same_bytes=True).problems == []
