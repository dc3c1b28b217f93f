"""What `gcloud builds submit` uploads: `.gcloudignore`, else gcloud's default when the folder
has Git files (which includes `.gitignore`), else everything
(https://cloud.google.com/sdk/gcloud/reference/topic/gcloudignore). A build whose Dockerfile
is ignored fails in the fake as it fails on Google, where the file never reaches the builder."""

from __future__ import annotations

import pytest

from hw5kit.confined import Plain
from hw5kit.gcloud_fake import gcloudignore

from .test_builds import COURSE_LIKE, submit, write_source

MISSING_APP = "lstat /workspace/Dockerfile.app: no such file or directory"


@pytest.mark.parametrize(
    ("files", "built"),
    [
        ({".gcloudignore": "Dockerfile.app\n"}, False),
        ({".gcloudignore": "Dockerfile.a*\n!Dockerfile.app\n"}, True),  # re-included after
        ({".gcloudignore": "/Dockerfile.app   \n"}, False),  # anchored; trailing spaces go
        ({".gitignore": "*.app\n"}, False),  # no .gcloudignore: .gitignore is included
        ({".gitignore": "*.app\n", ".gcloudignore": "# nothing ignored\n"}, True),
        ({".gitignore": "*.app\n", ".gcloudignore": "#!include:.gitignore\n"}, False),
        ({".gcloudignore": "Dockerfile.app/\n"}, True),  # a trailing / matches folders only
        ({".gcloudignore": "**/Dockerfile.app\n"}, False),
        ({".gcloudignore": "\\#x\nDockerfile.ap?\n"}, False),
    ],
)
def test_a_dockerfile_the_ignore_files_leave_out_is_not_built(cloud, tmp_path, files, built):
    src = write_source(tmp_path, COURSE_LIKE)
    for name, text in files.items():
        (src / name).write_text(text)
    done = submit(cloud, src)
    assert (done.returncode == 0) is built, done.stdout + done.stderr
    assert (MISSING_APP in done.stdout) is not built


def test_without_git_files_everything_is_uploaded_and_gcloudignore_can_be_turned_off(
    cloud, tmp_path
):
    src = write_source(tmp_path, COURSE_LIKE)
    (src / "notes.gitignore").write_text("Dockerfile.app\n")  # not a Git file: no effect
    assert submit(cloud, src).returncode == 0
    (src / ".gcloudignore").write_text("Dockerfile.app\n")
    assert submit(cloud, src).returncode == 1
    assert cloud.gcloud("config", "set", "gcloudignore/enabled", "false").returncode == 0
    assert submit(cloud, src).returncode == 0


def test_the_default_ignore_file_is_announced_as_gcloud_announces_it(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    done = submit(cloud, src)
    assert done.returncode == 0  # .git is left out, nothing the build needs
    assert "Some files were not included in the source upload." in done.stderr
    assert "Creating temporary archive of 3 file(s) totalling" in done.stderr
    (src / ".gcloudignore").write_text(".git\n")
    done = submit(cloud, src)
    assert "Some files were not included" not in done.stderr  # its own file: no note


def test_an_include_of_another_folder_is_refused(cloud, tmp_path):
    src = write_source(tmp_path, COURSE_LIKE)
    (src / ".gcloudignore").write_text("#!include:sub/.gitignore\n")
    done = submit(cloud, src)
    assert done.returncode == 1
    assert "May only include files in the same directory." in done.stderr


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("foo", "foo", False, True),
        ("foo", "a/b/foo", False, True),
        ("/bar", "bar", False, True),
        ("/bar", "a/bar", False, False),
        ("foo/bar", "x/foo/bar", False, True),  # gcloud matches from the right
        ("foo/", "foo", False, False),
        ("foo/", "foo", True, True),
        ("foo/", "foo/inner.txt", False, True),  # a folder's files go with it
        ("qux/**", "qux/a/b", False, True),
        ("**/baz", "a/b/baz", False, True),
        ("*/bar", "foo/bar", False, True),
        ("*/bar", "foo/qux/bar", False, False),
        ("*~", "a/notes.txt~", False, True),
        ("\\!bar", "!bar", False, True),
    ],
)
def test_patterns_match_as_gcloud_documents(pattern, path, is_dir, ignored):
    chooser = gcloudignore.Chooser(gcloudignore.parse(pattern + "\n", None), "test")
    assert chooser(path, is_dir) is (not ignored)


def test_a_folder_ignored_cannot_have_files_re_included(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    (tmp_path / "top").write_text("x")
    (tmp_path / ".gcloudignore").write_text("d/\n!d/keep\n")
    with Plain().folder(str(tmp_path), "/", flag="SOURCE") as folder:
        listing = folder.listing(gcloudignore.chooser_for(folder))
    assert set(listing.files) == {".gcloudignore", "top"}
    assert "d" in listing.ignored
