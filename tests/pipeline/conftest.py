import pytest

from hw5kit.gcloud_fake import GATEWAY_APIS, HW5_APIS, FakeGcloud

from ..conftest import subprocess_env
from ..support.pipeline import PROJECT, Cloud


@pytest.fixture
def cloud(tmp_path) -> Cloud:
    fake = FakeGcloud(tmp_path / "gcloud-state")
    fake.install(tmp_path / "bin")
    # what `nox -s setup` provisions for the repository's config, which has v3
    fake.add_project(PROJECT, apis=(*HW5_APIS, *GATEWAY_APIS))
    return Cloud(fake, fake.env(subprocess_env(tmp_path)))
