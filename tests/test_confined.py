"""The confined reader: beneath a root, no link followed, regular files the script's uid may
read, size-capped; one message for every refusal, with openat2 and with the openat walk."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest

from hw5kit import confined
from hw5kit.confined import Confined, Plain, TooLarge, Unreadable

SECRET = b"hw5-SECRET-CONFINED-3b1f"


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    if request.param == "openat2" and not confined.openat2_works():
        pytest.skip("no openat2 here")
    if request.param == "walk":
        monkeypatch.setattr(confined, "openat2_works", lambda: False)
    return request.param


@pytest.fixture
def tree(tmp_path):
    """A workspace with good files and every kind of trap, and a secret outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    ws = tmp_path / "ws"
    (ws / "deployment").mkdir(parents=True)
    (ws / "deployment" / "cloudbuild.yaml").write_text("steps: []\n")
    (ws / "link.yaml").symlink_to(secret)
    (ws / "inner-link.yaml").symlink_to("deployment/cloudbuild.yaml")
    (ws / "dirlink").symlink_to(outside)
    (ws / "deployment" / "up").symlink_to("..")
    os.mkfifo(ws / "fifo")
    (ws / "big.yaml").write_bytes(b"x" * (confined.MAX_FILE + 1))
    return {"ws": ws, "secret": secret, "outside": outside}


REFUSED = [
    "{secret}",
    "/etc/shadow",
    "/nonexistent/hw5",
    "/dev/zero",
    "link.yaml",
    "dirlink/secret.txt",
    "deployment/up/deployment/cloudbuild.yaml",
    "../outside/secret.txt",
    "deployment/../../outside/secret.txt",
    "fifo",
    "deployment",
    "missing.yaml",
    "inner-link.yaml",  # even a link that stays inside: no link is followed
    "a\0b",
]


def test_every_refusal_gives_one_and_the_same_message(tree, resolver):
    reader = Confined(tree["ws"])
    messages = set()
    for name in REFUSED:
        given = name.format(secret=tree["secret"])
        with pytest.raises(Unreadable) as caught:
            reader.read(given, tree["ws"] / "deployment", flag="--config")
        assert not isinstance(caught.value, TooLarge)
        messages.add(str(caught.value).replace(given, "NAME"))
        assert SECRET.decode() not in str(caught.value)
    assert messages == {f"--config: [NAME]: {confined.CONFINED_REASON}"}


def test_regular_files_inside_are_read_from_the_opened_descriptor(tree, resolver):
    reader = Confined(tree["ws"])
    ws = tree["ws"]
    assert reader.read("cloudbuild.yaml", ws / "deployment", flag="--config") == b"steps: []\n"
    assert reader.read(str(ws / "deployment/cloudbuild.yaml"), "/", flag="x") == b"steps: []\n"
    assert reader.read("deployment/./cloudbuild.yaml", ws, flag="x") == b"steps: []\n"
    with pytest.raises(TooLarge):
        reader.read("big.yaml", ws, flag="--config")
    with reader.folder(".", ws, flag="SOURCE") as folder:
        listing = folder.listing()
        assert "deployment/cloudbuild.yaml" in listing.files
        assert {"link.yaml", "dirlink", "deployment/up"} <= listing.links
        assert "fifo" not in listing.files  # neither a file nor a link
        assert folder.read("deployment/cloudbuild.yaml", flag="docker build") == b"steps: []\n"
        with pytest.raises(Unreadable):
            folder.read("link.yaml", flag="docker build")
    for name in ("dirlink", "/", "..", "deployment/up"):
        with pytest.raises(Unreadable):
            reader.folder(name, ws, flag="SOURCE")


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another owner needs root")
def test_a_hard_link_to_a_file_the_script_cannot_read_is_refused(tree, resolver):
    uid = gid = 1_999_999_999
    ws = tree["ws"]
    os.link(tree["secret"], ws / "hard.yaml")  # what protected_hardlinks lets root do
    (ws / "mine.yaml").write_text("mine\n")
    os.chown(ws / "mine.yaml", uid, gid)
    (ws / "world.yaml").write_text("world\n")
    (ws / "world.yaml").chmod(0o644)
    reader = Confined(ws, uid, gid)
    with pytest.raises(Unreadable):
        reader.read("hard.yaml", ws, flag="--openapi-spec")
    assert reader.read("mine.yaml", ws, flag="x") == b"mine\n"
    assert reader.read("world.yaml", ws, flag="x") == b"world\n"
    (ws / "mine.yaml").chmod(0o044)  # others may read, its owner may not: refused, as Linux does
    with pytest.raises(Unreadable):
        reader.read("mine.yaml", ws, flag="x")


def test_a_file_swapped_for_a_link_while_it_is_read_never_reads_the_target(tree, resolver):
    """The race of issue 15: another process keeps replacing the file by a link to a secret."""
    ws = tree["ws"]
    (ws / "Dockerfile.base").write_text("FROM python:3.11-slim\n")
    swapper = subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            f"while :; do ln -sfn '{tree['secret']}' .a && mv -Tf .a Dockerfile.base; "
            "echo 'FROM python:3.11-slim' > .b && mv -Tf .b Dockerfile.base; done",
        ],
        cwd=ws,
    )
    reader = Confined(ws)
    seen = {"read": 0, "refused": 0}
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not (seen["read"] > 50 and seen["refused"] > 50):
            try:
                data = reader.read("Dockerfile.base", ws, flag="docker build")
            except Unreadable:
                seen["refused"] += 1
            else:
                assert SECRET not in data
                seen["read"] += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert seen["read"] and seen["refused"], seen  # the race really happened both ways


def test_the_plain_reader_follows_links_but_never_blocks_or_reads_devices(tree):
    ws = tree["ws"]
    reader = Plain()
    assert reader.read("inner-link.yaml", ws, flag="--config") == b"steps: []\n"
    for name in ("fifo", "/dev/zero", "deployment", "missing"):
        with pytest.raises(Unreadable) as caught:
            reader.read(name, ws, flag="--config")
        assert str(caught.value) == f"--config: [{name}]: {confined.PLAIN_REASON}"


def test_readable_by_follows_the_kernel_order():
    def info(mode, uid, gid):
        return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    assert confined.readable_by(info(0o400, 5, 5), 5, 5)
    assert not confined.readable_by(info(0o044, 5, 5), 5, 5)  # owner bits win
    assert confined.readable_by(info(0o040, 0, 5), 5, 5)
    assert not confined.readable_by(info(0o640, 0, 0), 5, 5)
    assert confined.readable_by(info(0o604, 0, 0), 5, 5)
