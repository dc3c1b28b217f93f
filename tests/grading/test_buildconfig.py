"""Reading a Cloud Build config statically: the ways students write the same steps."""

from __future__ import annotations

import yaml

from hw5kit.grading import buildconfig as bc

BASE_ID, BASE_LATEST, APP_ID = "@BASE@:@ID@", "@BASE@:latest", "@APP@:@ID@"


def analyse(text: str) -> bc.Analysis:
    return bc.analyse(yaml.safe_load(text))


def test_dollar_forms_images_and_docker_tag_count_as_the_same_thing():
    a = analyse(
        """
steps:
- name: gcr.io/cloud-builders/docker
  args: [build, -t, "$_BASE_IMAGE_URI:$BUILD_ID", "--file=Dockerfile.base", .]
- name: gcr.io/cloud-builders/docker
  args: [tag, "${_BASE_IMAGE_URI}:${BUILD_ID}", "${_BASE_IMAGE_URI}"]
- name: gcr.io/cloud-builders/docker
  args: [build, "--build-arg=BASE=${_BASE_IMAGE_URI}", "--tag=${_APP_URI}:${BUILD_ID}",
         -f, "./${_TARGET_DOCKERFILE}", "--build-arg", "PORT=${_SERVING_PORT}", .]
images: ["${_BASE_IMAGE_URI}:${BUILD_ID}", "${_BASE_IMAGE_URI}", "${_APP_URI}:${BUILD_ID}"]
"""
    )
    assert a.tags_of(bc.BASE) == {BASE_ID, BASE_LATEST}  # `docker tag X IMG` means IMG:latest
    assert a.tags_of(bc.APP) == {APP_ID}
    assert all(a.pushed(ref) for ref in (BASE_ID, BASE_LATEST, APP_ID))
    app = a.builds_of(bc.APP)[0]
    assert app.file == f"./{bc.DOCKERFILE}" and app.build_args["BASE"] == "@BASE@"
    assert a.referenced >= {"_BASE_IMAGE_URI", "_APP_URI", "_SERVING_PORT", "_TARGET_DOCKERFILE"}
    assert bc.unknown_references(a) == []


def test_shell_steps_are_read_command_by_command():
    a = analyse(
        """
steps:
- name: gcr.io/cloud-builders/docker
  entrypoint: bash
  args:
  - -c
  - |
    docker pull ${_BASE_IMAGE_URI}:latest || exit 0
- name: gcr.io/cloud-builders/docker
  script: |
    if ! docker manifest inspect ${_BASE_IMAGE_URI}:latest; then
      docker build -t ${_BASE_IMAGE_URI}:${BUILD_ID} -t ${_BASE_IMAGE_URI}:latest \\
        -f Dockerfile.base . && docker push --all-tags ${_BASE_IMAGE_URI}
    fi
"""
    )
    pull = next(c for c in a.commands if c.verb == "pull")
    assert pull.tolerant and pull.scripted and pull.args == [BASE_LATEST]
    build = a.builds_of(bc.BASE)[0]
    assert build.command.conditional and set(build.tags) == {BASE_ID, BASE_LATEST}
    assert a.pushed(BASE_ID) and a.pushed(BASE_LATEST)  # --all-tags


def test_wait_for_decides_what_runs_after_what():
    a = analyse(
        """
steps:
- {id: base, name: docker, args: [build, -t, "${_BASE_IMAGE_URI}:latest", .]}
- {id: other, name: docker, args: [pull, alpine], waitFor: ["-"]}
- {id: app, name: docker, args: [build, -t, "${_APP_URI}:${BUILD_ID}", .], waitFor: [other]}
- {id: app2, name: docker, args: [build, -t, "${_APP_URI}:${BUILD_ID}", .], waitFor: ["-"]}
- {id: last, name: docker, args: [push, "${_APP_URI}:${BUILD_ID}"]}
"""
    )
    assert not a.runs_after(2, 0)  # waits only for `other`, which starts at once
    assert not a.runs_after(3, 0)
    assert a.runs_after(4, 0) and a.runs_after(4, 3)  # no waitFor: every previous step
    assert not a.runs_after(1, 0)


def test_unknown_and_misspelt_substitutions_are_named_with_a_suggestion():
    a = analyse(
        """
steps:
- name: docker
  args: [build, -t, "${_APP_URl}:${BUILDID}", "--build-arg", "X=${_MINE}", .]
substitutions: {_MINE: "1"}
"""
    )
    problems = bc.unknown_references(a)
    assert problems == [
        "${BUILDID} is not a Cloud Build variable: it is replaced by nothing (did you mean "
        "${BUILD_ID}?)",
        "${_APP_URl} is used but never set: it is replaced by nothing (did you mean ${_APP_URI}?)",
    ]


def test_anything_that_is_not_a_config_gives_an_empty_analysis():
    for raw in (None, "text", [1, 2], {"steps": "nope"}, {"steps": [None, 3, {"args": 5}]}):
        a = bc.analyse(raw)
        assert a.builds == [] and a.pushes == set()


REG = "us-central1-docker.pkg.dev/hw5-1/hw5-images"


def test_names_written_out_are_the_base_and_the_app_by_what_they_build():
    raw = yaml.safe_load(
        f"""
steps:
- name: docker
  args: [build, -t, "{REG}/base:$BUILD_ID", -t, "{REG}/base:latest", -f, Dockerfile.base, .]
- name: docker
  args: [build, --build-arg, "B={REG}/base:$BUILD_ID", -t, "{REG}/backend_v1:$BUILD_ID",
         -f, Dockerfile.backend_v1, .]
- name: docker
  args: [push, "{REG}/base:$BUILD_ID"]
images: ["{REG}/base:latest", "{REG}/backend_v1:$BUILD_ID"]
"""
    )
    first = bc.analyse(raw)
    assert first.builds_of(bc.BASE) == [] and first.builds_of(bc.APP) == []
    literals = bc.roles(first, ["backend_v1"])
    assert literals == {f"{REG}/base": bc.BASE, f"{REG}/backend_v1": bc.APP}
    a = bc.analyse(raw, literals)
    assert a.tags_of(bc.BASE) == {BASE_ID, BASE_LATEST} and a.tags_of(bc.APP) == {APP_ID}
    assert all(a.pushed(ref) for ref in (BASE_ID, BASE_LATEST, APP_ID))
    assert a.builds_of(bc.APP)[0].build_args["B"] == BASE_ID
    # a longer name that starts like a written-out one is left alone (base vs base_image)
    other = bc.analyse(
        {"steps": [{"name": "docker", "args": ["pull", f"{REG}/base_image"]}]}, literals
    )
    assert other.commands[0].args == [f"{REG}/base_image"]


def test_the_values_the_submit_passed_name_the_images_too():
    raw = {"steps": [{"name": "docker", "args": ["build", "-t", f"{REG}/x:$BUILD_ID", "."]}]}
    literals = bc.roles(bc.analyse(raw), [], {"_APP_URI": f"{REG}/x"})
    assert literals == {f"{REG}/x": bc.APP}
    assert bc.analyse(raw, literals).tags_of(bc.APP) == {APP_ID}


def test_step_lines_point_at_each_step():
    text = "# a comment\nsteps:\n  - name: a\n    args: [x]\n\n  - name: b\n"
    assert bc.step_lines(text) == [3, 6]
    assert bc.step_lines("not: [valid") == [] and bc.step_lines("- a list\n") == []
