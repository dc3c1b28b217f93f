"""What a Cloud Build config does with the course's images, read statically.

The config is read the way gcloud reads it (``hw5kit.gcloud_fake.cloudbuild``: snake_case keys
turned into camelCase), then every field Cloud Build substitutes is substituted with markers:
``${_BASE_IMAGE_URI}`` becomes ``@BASE@``, ``${_APP_URI}`` ``@APP@``, ``${BUILD_ID}`` ``@ID@``
and so on, whether written ``$X`` or ``${X}``; an unknown or misspelt name becomes "" as in
Cloud Build. The docker commands are then collected from docker-builder steps and from
``bash -c`` / ``script`` steps, and the checks ask questions such as "which tags does the build
of @BASE@ give?" or "is @APP@:@ID@ pushed?".

Names written out count as much as names from substitutions (grading by effect): ``roles``
finds which image each ``docker build`` makes (the base: built from ``Dockerfile.base`` or
named like the ``_BASE_IMAGE_URI`` the submit passed; the app: built from
``${_TARGET_DOCKERFILE}`` or ``Dockerfile.<app>``, or named like the ``_APP_URI`` passed), and
``analyse(raw, literals=...)`` reads the config again with those written-out repositories
replaced by the same markers, so that ``us-central1-docker.pkg.dev/P/R/base_image:$BUILD_ID``
and ``${_BASE_IMAGE_URI}:${BUILD_ID}`` are the same thing to the checks.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from ..gcloud_fake import cloudbuild as cb
from ..gcloud_fake import docker

COURSE_SUBSTITUTIONS = {
    "_BASE_IMAGE_URI": "@BASE@",
    "_APP_URI": "@APP@",
    "_SERVING_PORT": "@PORT@",
    "_TARGET_DOCKERFILE": "@DOCKERFILE@",
}
BASE, APP, ID, DOCKERFILE = "@BASE@", "@APP@", "@ID@", "@DOCKERFILE@"
ROLE_SUBSTITUTIONS = {BASE: "_BASE_IMAGE_URI", APP: "_APP_URI"}
SHELLS = {"bash", "sh", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/env"}
SHELL_OPERATORS = {";", "&&", "||", "|", "&", ";;", "(", ")"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "!", "{", "}", "while"}


@dataclass
class DockerCommand:
    step: int
    step_id: str | None
    verb: str
    args: list[str]
    tolerant: bool  # its failure does not fail the build
    scripted: bool  # inside a shell script
    conditional: bool  # that script has a condition (if, ||, &&)


@dataclass
class Build:
    command: DockerCommand
    tags: list[str]
    file: str | None
    build_args: dict[str, str]
    cache_from: list[str]
    context: str | None


@dataclass
class Analysis:
    data: dict[str, Any]
    commands: list[DockerCommand] = field(default_factory=list)
    builds: list[Build] = field(default_factory=list)
    pushes: set[str] = field(default_factory=set)
    aliases: list[tuple[str, str]] = field(default_factory=list)  # docker tag SRC DST
    referenced: set[str] = field(default_factory=set)
    defined: set[str] = field(default_factory=set)
    steps: list[dict[str, Any]] = field(default_factory=list)
    literals: dict[str, str] = field(default_factory=dict)  # written-out repository -> marker

    # -- questions the checks ask -- #
    def builds_of(self, marker: str) -> list[Build]:
        return [b for b in self.builds if any(_repo(t) == marker for t in b.tags)]

    def tags_of(self, marker: str) -> set[str]:
        """Every tag of ``marker``: built with -t, or made with docker tag."""
        tags = {t for b in self.builds for t in b.tags if _repo(t) == marker}
        for source, target in self.aliases:
            if _repo(target) == marker:
                tags.add(target)
            if _repo(source) == marker:
                tags.add(source)
        return tags

    def pushed(self, ref: str) -> bool:
        return ref in self.pushes or f"{_repo(ref)}:*" in self.pushes

    def runs_after(self, later: int, earlier: int) -> bool:
        """Step ``later`` starts only once step ``earlier`` finished (Cloud Build's waitFor:
        none = every previous step; ["-"] = at once; else the named steps)."""
        seen: set[int] = set()
        stack = [later]
        while stack:
            index = stack.pop()
            for dep in self._dependencies(index):
                if dep == earlier:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return False

    def _dependencies(self, index: int) -> list[int]:
        step = self.steps[index] if index < len(self.steps) else {}
        wait = step.get("waitFor")
        if not isinstance(wait, list):
            return list(range(index))
        ids = {s.get("id"): i for i, s in enumerate(self.steps) if isinstance(s, dict)}
        return [ids[w] for w in wait if w in ids and ids[w] < index]


def _repo(ref: str) -> str:
    """``@BASE@:@ID@`` -> ``@BASE@``; an image without tag keeps its name."""
    ref = ref.split("@sha256:")[0]
    last = ref.rsplit("/", 1)[-1]
    return ref[: len(ref) - len(last)] + last.split(":")[0] if ":" in last else ref


def normalize(ref: str) -> str:
    """An image reference with its implicit ``:latest`` made explicit."""
    ref = ref.strip().strip("'\"")
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@sha256:" not in last:
        return ref + ":latest"
    return ref


def analyse(raw: Any, literals: dict[str, str] | None = None) -> Analysis:
    """The config's docker commands with the course's substitutions as markers, and each
    written-out repository of ``literals`` replaced by its marker too."""
    data = cb.snake_to_camel(raw) if isinstance(raw, dict) else {}
    analysis = Analysis(data, literals=dict(literals or {}))
    steps = data.get("steps")
    if not isinstance(steps, list):
        return analysis
    analysis.steps = [s if isinstance(s, dict) else {} for s in steps]
    substitutions = data.get("substitutions")
    defined = set(substitutions) if isinstance(substitutions, dict) else set()
    analysis.defined = {str(k) for k in defined}
    values = {name: f"@{name}@" for name in cb.BUILTINS}
    values["BUILD_ID"] = ID
    if isinstance(substitutions, dict):
        values.update({str(k): str(v) for k, v in substitutions.items()})
    values.update(COURSE_SUBSTITUTIONS)
    parts = {
        "steps": [
            {k: s[k] for k in cb.STEP_FIELDS if k in s}
            for s in analysis.steps
            if isinstance(s, dict)
        ],
        "images": data.get("images", []),
        "artifacts": data.get("artifacts", {}),
    }
    analysis.referenced = cb.template_keys(parts)
    pattern = _literal_pattern(analysis.literals)
    for index, step in enumerate(analysis.steps):
        resolved = _replace_literals(cb.substitute(step, values), pattern, analysis.literals)
        for command in _docker_commands(index, resolved):
            analysis.commands.append(command)
            _collect(analysis, command)
    images = data.get("images")
    if isinstance(images, list):
        resolved = _replace_literals(cb.substitute(images, values), pattern, analysis.literals)
        for image in resolved:
            if isinstance(image, str):
                analysis.pushes.add(normalize(image))
    return analysis


def _literal_pattern(literals: dict[str, str]) -> re.Pattern | None:
    if not literals:
        return None
    names = sorted(literals, key=len, reverse=True)
    # a repository, not the start of a longer name (base vs base_image)
    return re.compile("(" + "|".join(re.escape(n) for n in names) + r")(?![a-z0-9._/-])")


def _replace_literals(value: Any, pattern: re.Pattern | None, literals: dict[str, str]) -> Any:
    if pattern is None:
        return value
    if isinstance(value, str):
        return pattern.sub(lambda m: literals[m.group(1)], value)
    if isinstance(value, list):
        return [_replace_literals(v, pattern, literals) for v in value]
    if isinstance(value, dict):
        return {k: _replace_literals(v, pattern, literals) for k, v in value.items()}
    return value


def dockerfile_role(file: str | None, apps: tuple[str, ...] | list[str]) -> str | None:
    """@BASE@ or @APP@ for a build from this Dockerfile (the course's names), else None."""
    name = PurePosixPath((file or "Dockerfile").removeprefix("./")).name
    if name == DOCKERFILE or (file or "").endswith(DOCKERFILE):
        return APP
    lowered = name.lower()
    if lowered in ("dockerfile.base", "base.dockerfile") or lowered.endswith(".base"):
        return BASE
    if any(lowered == f"dockerfile.{app}" for app in apps):
        return APP
    return None


def roles(
    analysis: Analysis, apps: tuple[str, ...] | list[str], values: dict[str, str] | None = None
) -> dict[str, str]:
    """Written-out repositories that are the base or the app image, found by what they are:
    the value the submit passed for _BASE_IMAGE_URI / _APP_URI, or the repository a
    ``docker build`` of Dockerfile.base / the target Dockerfile tags."""
    out: dict[str, str] = {}
    for marker, key in ROLE_SUBSTITUTIONS.items():
        value = (values or {}).get(key, "").strip()
        if value and "@" not in value:
            out[value] = marker
    taken = {m for b in analysis.builds for t in b.tags for m in (BASE, APP) if _repo(t) == m}
    for build in analysis.builds:
        role = dockerfile_role(build.file, apps)
        if role is None or role in taken:
            continue
        for tag in build.tags:
            repo = _repo(tag)
            if repo and "@" not in repo and repo not in out:
                out[repo] = role
    return out


def step_lines(text: str) -> list[int]:
    """The 1-based line where each step of a Cloud Build YAML text starts (empty when the
    text cannot be read that way)."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "steps" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    return []


def _docker_commands(index: int, step: dict[str, Any]) -> list[DockerCommand]:
    name = str(step.get("name") or "")
    entry = str(step.get("entrypoint") or "")
    args = _strings(step.get("args"))
    step_id = step.get("id") if isinstance(step.get("id"), str) else None
    tolerant = step.get("allowFailure") is True or bool(step.get("allowExitCodes"))
    script = step.get("script") if isinstance(step.get("script"), str) else None
    shell = entry in SHELLS or (not entry and name.split(":")[0] in SHELLS)
    if script is None and shell and "-c" in args and args.index("-c") + 1 < len(args):
        script = args[args.index("-c") + 1]
    if script is None and args and entry in SHELLS and not args[0].startswith("-"):
        script = " ".join(args)
    if script is not None:
        return _from_script(index, step_id, script, tolerant)
    is_docker = name.split(":")[0] in cb.DOCKER_BUILDERS and entry in ("", "docker")
    if (entry == "docker" or is_docker) and args:
        return [DockerCommand(index, step_id, args[0], args[1:], tolerant, False, False)]
    return []


def _from_script(
    index: int, step_id: str | None, script: str, tolerant: bool
) -> list[DockerCommand]:
    text = script.replace("\\\n", " ").replace("\n", " ; ")
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        tokens = text.split()
    conditional = any(t in ("if", "||", "&&") for t in tokens)
    out: list[DockerCommand] = []
    current: list[str] = []
    groups: list[tuple[list[str], str | None]] = []
    for token in [*tokens, ";"]:
        if token in SHELL_OPERATORS:
            if current:
                groups.append((current, token))
            current = []
        else:
            current.append(token)
    for words, after in groups:
        while words and words[0] in SHELL_KEYWORDS:
            words = words[1:]
        if len(words) >= 2 and words[0] == "docker":
            out.append(
                DockerCommand(
                    index,
                    step_id,
                    words[1],
                    words[2:],
                    tolerant or after == "||",
                    True,
                    conditional,
                )
            )
    return out


def _collect(analysis: Analysis, command: DockerCommand) -> None:
    if command.verb == "build":
        analysis.builds.append(_parse_build(command))
    elif command.verb == "push":
        names = [a for a in command.args if not a.startswith("-")]
        if "--all-tags" in command.args or "-a" in command.args:
            analysis.pushes.update(f"{_repo(n)}:*" for n in names)
        else:
            analysis.pushes.update(normalize(n) for n in names)
    elif command.verb == "tag":
        names = [a for a in command.args if not a.startswith("-")]
        if len(names) == 2:
            analysis.aliases.append((normalize(names[0]), normalize(names[1])))
    elif command.verb == "image" and command.args[:1] == ["push"]:
        _collect(
            analysis,
            DockerCommand(**{**command.__dict__, "verb": "push", "args": command.args[1:]}),
        )


def _parse_build(command: DockerCommand) -> Build:
    # lenient where docker is strict: grade what the student meant, the fake run says the rest
    parsed = docker.parse_docker_build(command.args)
    return Build(
        command,
        [normalize(t) for t in parsed.tags],
        parsed.files[-1] if parsed.files else None,
        parsed.build_args,
        [normalize(c) for c in parsed.cache_from],
        parsed.positional[-1] if parsed.positional else None,
    )


def unknown_references(analysis: Analysis) -> list[str]:
    """Problems with the substitutions the config refers to: a name nobody sets (a misspelt
    one, with the closest known name)."""
    known = set(COURSE_SUBSTITUTIONS) | analysis.defined | set(cb.BUILTINS)
    out = []
    for name in sorted(analysis.referenced - known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
        hint = f" (did you mean ${{{close[0]}}}?)" if close else ""
        if name.startswith("_"):
            out.append(f"${{{name}}} is used but never set: it is replaced by nothing{hint}")
        else:
            out.append(
                f"${{{name}}} is not a Cloud Build variable: it is replaced by nothing{hint}"
            )
    return out
