"""The core photos ship inside hw5kit (for the light environment's verify and live grading):
byte-identical copies of the packages' files, with their sources and licences written down."""

from __future__ import annotations

import hashlib

import pytest

from hw5kit import photos

from .conftest import ROOT

README = photos.SHIPPED / "README.md"


@pytest.mark.parametrize("name", photos.CORE_PHOTOS)
def test_each_core_photo_is_shipped_as_the_package_s_own_file(name):
    photo = photos.photo(name)
    assert photo.path == photos.SHIPPED / name
    assert photo.path.read_bytes() == photo.upstream_path.read_bytes()


def test_only_core_photos_are_shipped_and_each_has_its_licence_and_hash():
    shipped = {p.name for p in photos.SHIPPED.iterdir() if p.name != "README.md"}
    assert shipped == set(photos.CORE_PHOTOS)
    text = README.read_text()
    for name in shipped:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} "))
        assert "CC0" in row or "CC BY" in row, row
        digest = hashlib.sha256((photos.SHIPPED / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in text


def test_the_photos_stay_out_of_the_images():
    assert '"assets/photos/*"' in (ROOT / "pyproject.toml").read_text()
    assert "src/hw5kit/assets/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_non_core_photos_still_come_from_their_packages():
    rocket = photos.photo("rocket.jpg")
    assert not rocket.core and rocket.path == rocket.upstream_path
    assert "skimage" in str(rocket.path)
