"""Hostile and malformed submissions: each gives failed checks with a clear message, the grader
finishes, and the grader's machine and files are unharmed (files, secrets, processes).

Script attacks run in both isolation modes: bubblewrap, and `user` (a uid of its own, without
bubblewrap; needs root). Attacks that would reach the host's network or the whole file system
run under bubblewrap only: in `user` mode they would really happen on this shared machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess

import pytest

from hw5kit.grading import report

from ..support import submissions
from .conftest import SHORT_LIMITS, TEST_LIMITS, lost_points, result, sandbox_for

SECRET = "hw5-SECRET-TOKEN-d41d8cd98f00b204"


def modes():
    out = [pytest.param("bwrap", id="bwrap")]
    out.append(
        pytest.param(
            "user",
            id="user",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="`user` mode needs root"),
        )
    )
    return out


@pytest.fixture
def grader_files(tmp_path):
    """Files of the grader's that a script must not touch, and its planted credentials."""
    home = tmp_path / "grader-home"
    creds = home / ".config" / "gcloud"
    creds.mkdir(parents=True)
    (creds / "credentials.db").write_text(SECRET)
    (creds / "application_default_credentials.json").write_text(json.dumps({"token": SECRET}))
    canary = tmp_path / "grader-files" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text("precious")
    return {"home": home, "creds": creds, "canary": canary}


@pytest.fixture
def hostile(materialize, grader_files, monkeypatch):
    """Grade the good submission with one script replaced; check the grader's files after."""
    monkeypatch.setenv("HOME", str(grader_files["home"]))
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(grader_files["creds"] / "credentials.db")
    )
    monkeypatch.setenv("CLOUDSDK_AUTH_ACCESS_TOKEN", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    def run(mode: str, body: str, script: str = "deployment/submit_build.sh", limits=TEST_LIMITS):
        submission = materialize(f"hostile-{mode}")
        (submission / script).write_text(
            "#!/bin/bash\n" + body.format(**_paths(grader_files, submission))
        )
        before = submissions.tree_digest(submission)
        box = sandbox_for(mode, limits)
        from hw5kit.grading import Options, grade

        grading = grade(submission, Options(sandbox=mode, limits=box.limits), sandbox=box)
        text = json.dumps(report.results_json(grading)) + report.summary(grading)
        assert SECRET not in text, "a secret of the grader reached the report"
        assert grader_files["canary"].read_text() == "precious"
        assert (grader_files["creds"] / "credentials.db").read_text() == SECRET
        assert submissions.tree_digest(submission) == before, "the submission was changed"
        assert _processes_with("hw5hostile") == []
        return grading

    return run


def _paths(files, submission):
    return {
        "canary": files["canary"],
        "canary_dir": files["canary"].parent,
        "home": files["home"],
        "creds": files["creds"] / "credentials.db",
        "submission": submission,
    }


def _processes_with(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


SUBMIT = "Q1.8"


@pytest.mark.parametrize("mode", modes())
def test_deleting_the_grader_s_files_and_the_submission_fails_and_harms_nothing(mode, hostile):
    grading = hostile(
        mode,
        'rm -rf "{canary_dir}" "{home}" "{submission}" 2>&1 | head -3\n'
        'rm -rf "$(cd "$(dirname "$0")/../../.." && pwd)" 2>/dev/null\n'  # the grading folder
        'rm -rf "$(dirname "$0")/.."\n'  # its own workspace
        "echo done\n",
    )
    assert not result(grading, SUBMIT).passed
    assert "never called `gcloud builds submit`" in result(grading, SUBMIT).output
    # the static checks read the snapshot, and the deploys ran in fresh workspaces
    assert set(lost_points(grading)) == {"Q1.8", "Q1.9", "Q1.10"}


def test_rm_rf_slash_in_bubblewrap_only_empties_the_workspace(hostile):
    grading = hostile("bwrap", "rm -rf --no-preserve-root / 2>/dev/null; echo survived\n")
    assert "survived" in result(grading, SUBMIT).output
    assert set(lost_points(grading)) == {"Q1.8", "Q1.9", "Q1.10"}


@pytest.mark.parametrize("mode", modes())
def test_a_fork_bomb_is_contained(mode, hostile):
    grading = hostile(
        mode,
        "hw5hostile() {{ hw5hostile | hw5hostile & }}; hw5hostile\nsleep 2\n",
        limits=SHORT_LIMITS,
    )
    assert not result(grading, SUBMIT).passed
    assert grading.duration < 60


@pytest.mark.parametrize("mode", modes())
def test_an_endless_loop_is_stopped_at_the_time_limit(mode, hostile):
    grading = hostile(
        mode, "while true; do :; done\n", "deployment/deploy_backend_v1.sh", limits=SHORT_LIMITS
    )
    output = result(grading, "Q3.1").output
    assert f"stopped by the grader after {SHORT_LIMITS.timeout:.0f}" in output
    assert "the time limit" in output
    assert set(lost_points(grading)) == {"Q3.1", "Q3.2", "Q3.3"}


@pytest.mark.parametrize("mode", modes())
def test_credentials_cannot_be_read(mode, hostile):
    grading = hostile(
        mode,
        "env\n"
        'cat "$GOOGLE_APPLICATION_CREDENTIALS" ~/.config/gcloud/* "{creds}" 2>&1\n'
        "cat /root/.config/gcloud/* 2>&1 | head -3\n"
        "find / -xdev -maxdepth 5 -name credentials.db 2>/dev/null | head -3 | xargs -r cat\n",
    )
    output = result(grading, SUBMIT).output
    assert "No such file" in output or "Permission denied" in output


@pytest.mark.parametrize("mode", modes())
def test_huge_output_is_cut_off(mode, hostile):
    grading = hostile(mode, "yes hw5hostile-spam\n")
    output = result(grading, SUBMIT).output
    assert "it printed more than 2 MiB" in output
    assert len(json.dumps(report.results_json(grading))) < 200_000


@pytest.mark.parametrize("mode", modes())
def test_a_huge_file_hits_the_file_size_limit(mode, hostile):
    grading = hostile(mode, "head -c 200000000 /dev/zero > big.bin\necho wrote\n")
    assert "File size limit exceeded" in result(grading, SUBMIT).output


@pytest.mark.parametrize("mode", modes())
def test_filling_the_workspace_with_files_is_stopped(mode, hostile):
    grading = hostile(mode, "mkdir lots && cd lots && i=0; while :; do : > f$i; i=$((i+1)); done\n")
    output = result(grading, SUBMIT).output
    # stopped by the count, or by the size-limited workspace's inode limit (whose errors then
    # flood the output)
    assert any(
        reason in output
        for reason in ("files in the workspace", "the time limit", "No space left on device")
    ), output


@pytest.mark.parametrize("mode", modes())
def test_processes_left_running_are_killed(mode, hostile):
    hostile(
        mode,
        "nohup bash -c 'exec -a hw5hostile-nohup sleep 3131' > /dev/null 2>&1 &\n"
        "setsid bash -c 'exec -a hw5hostile-daemon sleep 3132' &\n"
        "echo started\n",
    )  # the fixture asserts that no process named hw5hostile is left


def test_the_sandbox_has_no_network(hostile):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        grading = hostile(
            "bwrap",
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" "
            "2>&1 | tail -1\n",
        )
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing reached the host's loopback
    assert "Connection refused" in result(grading, SUBMIT).output


@pytest.mark.parametrize("mode", modes())
def test_the_fake_gcloud_refuses_files_outside_the_submission(mode, hostile):
    grading = hostile(
        mode,
        'ln -sf "{creds}" deployment/cloudbuild.yaml\n'
        "gcloud builds submit --region=us-central1 --config=deployment/cloudbuild.yaml .\n"
        'gcloud builds submit --region=us-central1 --config="{canary}" .\n'
        "gcloud builds submit --region=us-central1 --config=deployment/../../../../../etc/passwd "
        ".\n"
        "gcloud builds submit --region=us-central1 /\n",
    )
    output = result(grading, "Q1.10").output
    assert output.count("inside the submission (the grader's fake gcloud") == 4
    assert "the build failed" in output


@pytest.mark.parametrize("mode", modes())
def test_a_flood_of_gcloud_calls_is_cut_off(mode, hostile):
    limits = dataclasses.replace(TEST_LIMITS, gcloud_calls=10)
    grading = hostile(
        mode,
        "for i in $(seq 1 12); do gcloud config get-value project > /dev/null 2>&1; done\n"
        "gcloud config get-value project\n",
        limits=limits,
    )
    assert "at most 10 gcloud calls" in result(grading, SUBMIT).output


# --- malformed files -------------------------------------------------------------------------


def test_binary_files_fail_their_checks_clearly(materialize, grade_submission):
    submission = materialize("binary")
    (submission / "deployment" / "cloudbuild.yaml").write_bytes(os.urandom(3000) + b"\0")
    (submission / "deployment" / "deploy_backend_v1.sh").write_bytes(
        b"\x7fELF\0\0\0" + os.urandom(500)
    )
    (submission / "SHORT_ANSWER_TEMPLATE.md").write_bytes(b"\xff\xfe## Question 2\n\xc3\x28")
    grading = grade_submission(submission)
    assert "is a binary file, not text" in result(grading, "Q1.1").output
    assert not result(grading, "Q3.1").passed
    assert "not UTF-8 text" in result(grading, "Q2.2").output


def test_a_huge_file_is_left_out_with_a_note(materialize, grade_submission):
    submission = materialize("huge")
    with open(submission / "deployment" / "cloudbuild.yaml", "ab") as fh:
        fh.write(b"# padding\n" * 1_000_000)  # 10 MB
    grading = grade_submission(submission)
    assert "over the 8 MiB limit per file: left out" in result(grading, "Q1.1").output


@pytest.mark.parametrize("target", ["/etc/passwd", "canary"])
def test_a_symlink_leading_outside_is_never_followed(
    target, materialize, grade_submission, grader_files
):
    submission = materialize("symlink")
    link = submission / "deliverables.yaml"
    link.unlink()
    link.symlink_to(grader_files["canary"] if target == "canary" else target)
    (submission / "apps").symlink_to("/etc")  # a folder: left out too
    grading = grade_submission(submission)
    output = result(grading, "Q1.11").output
    assert "deliverables.yaml is a symbolic link to" in output
    assert "outside the submission: not read" in output
    assert "precious" not in json.dumps(report.results_json(grading))
    assert "root:x:0:0" not in json.dumps(report.results_json(grading))
    assert any("apps: is a symbolic link to /etc" in n for n in grading.context.snapshot.notes)


def test_a_fifo_does_not_block_the_grader(materialize, grade_submission):
    submission = materialize("fifo")
    (submission / "deliverables.yaml").unlink()
    os.mkfifo(submission / "deliverables.yaml")
    grading = grade_submission(submission)
    assert "is a FIFO, not a regular file" in result(grading, "Q1.11").output


def test_yaml_alias_bombs_are_refused(materialize, grade_submission):
    bomb = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    submission = materialize("bomb")
    (submission / "deliverables.yaml").write_text(bomb)
    with open(submission / "deployment" / "cloudbuild.yaml", "a") as fh:
        fh.write("x-bomb:\n" + "".join("  " + line + "\n" for line in bomb.splitlines()))
    grading = grade_submission(submission)
    assert "YAML aliases" in result(grading, "Q1.11").output
    assert "YAML aliases" in result(grading, "Q1.1").output
    assert grading.duration < 60


@pytest.mark.parametrize(
    ("cloudbuild", "deliverables"),
    [
        ("- just\n- a list\n", "just a string\n"),
        ("steps: {build: base}\n", "services: [v1, v2]\n"),
        ("steps:\n- null\n- 42\n- {name: 7, args: {a: b}}\n", "services:\n  v1: 3\n"),
        ("", ""),
    ],
)
def test_odd_yaml_shapes_fail_their_checks_without_crashing(
    cloudbuild, deliverables, materialize, grade_submission
):
    submission = materialize("shapes")
    (submission / "deployment" / "cloudbuild.yaml").write_text(cloudbuild)
    (submission / "deliverables.yaml").write_text(deliverables)
    grading = grade_submission(submission)
    for item in ("Q1.1", "Q1.2", "Q1.11", "Q2.1", "Q3.8"):
        assert not result(grading, item).passed
        assert result(grading, item).output.strip()
    assert "the grader could not" not in json.dumps(report.results_json(grading))
    assert result(grading, "Q3.1").passed  # the deploy scripts do not depend on either
