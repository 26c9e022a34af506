"""A small hostile corpus (tests/hostile.py: 7 of each family, every supported format's bomb among
them) through decode, the API and `facetrail index`: no server error, no crash, every file given
a reason. bench/hostile.py runs 1,000+ of them and measures memory."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.images import DecodeError, decode
from facetrail.web import create_app

from .hostile import FAMILIES, corpus
from .support import LEGAL_BASIS, SEARCH_FORM, upload

N = 7 * len(FAMILIES)
REASONS = {"empty", "too_large", "not_an_image", "unsupported_format", "too_many_pixels", "too_much_memory",
           "truncated", "corrupt"}


@pytest.fixture(scope="module")
def files():
    return list(corpus(N))


def test_every_file_decodes_or_is_refused_with_a_reason(files):
    assert {f.family for f in files} == set(FAMILIES)
    outcome = {}
    for f in files:
        try:
            decoded = decode(f.data)
        except DecodeError as exc:
            assert exc.reason in REASONS and str(exc), f.name
            outcome[f.name] = exc.reason
        else:
            assert decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3, f.name
            outcome[f.name] = "decoded"
    bombs = {name: reason for name, reason in outcome.items() if "-bomb-" in name}
    assert bombs[files[1].name] == "too_much_memory"  # the first bomb: the 368 KB float TIFF
    assert {"too_many_pixels", "too_much_memory"} <= set(bombs.values())
    assert set(outcome.values()) >= {"decoded", "truncated", "not_an_image", "too_many_pixels", "too_much_memory"}


def test_the_api_answers_every_file_with_a_code_and_never_500(dev_index, files):
    settings = dev_index.settings.model_copy(
        update={"search_limits": {"investigator": {"hour": 10_000, "day": 10_000}}})
    headers = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    codes = {}
    with TestClient(create_app(settings), headers=headers) as client:  # a server exception would raise here
        for f in files:
            response = client.post("/api/v1/search", files=upload(f.data, f.name), data=SEARCH_FORM)
            assert response.status_code < 500, (f.name, response.text)
            body = response.json()
            codes[f.name] = "results" if response.status_code == 200 else body["code"]
            if response.status_code != 200:
                assert len(body["detail"]) > 10, f.name
        assert client.get("/healthz").status_code == 200
    assert set(codes.values()) <= REASONS | {"no_face", "results"}, set(codes.values())
    assert codes[files[1].name] == "too_much_memory"


def test_facetrail_index_gives_every_file_a_reason(tmp_path, files):
    folder = tmp_path / "hostile"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.data)
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path / "data"), "index", str(folder), "--workers", "1",
              "--legal-basis", LEGAL_BASIS, "--verbose"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    done = re.search(r"Done: (\d+) files, (\d+) new images, \d+ faces, (\d+) duplicates, \d+ unchanged, "
                     r"skipped: (.*?); ", result.stdout.replace("\n", " "))
    assert done, result.stdout
    files_seen, images, duplicates = (int(done.group(k)) for k in (1, 2, 3))
    skipped = {reason: int(n) for n, reason in re.findall(r"(\d+) (\w+)", done.group(4))}
    assert files_seen == N and images + duplicates + sum(skipped.values()) == N
    assert set(skipped) <= REASONS, skipped  # no "failed": nothing crashed in the analysis processes
    named = {f.name for f in files if f.name in result.output}
    assert len(named) >= sum(skipped.values())  # each skipped file is listed with its reason
