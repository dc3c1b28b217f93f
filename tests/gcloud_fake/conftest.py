import pytest

from hw5kit.gcloud_fake import FakeGcloud

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, Cloud


@pytest.fixture
def cloud(tmp_path) -> Cloud:
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    fake.add_project(PROJECT)
    return Cloud(fake, fake.env(subprocess_env(tmp_path)))
