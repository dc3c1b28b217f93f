"""What a Cloud Build config does with the course's images, read statically.

The config is read the way gcloud reads it (``hw5kit.gcloud_fake.cloudbuild``: snake_case keys
turned into camelCase), then every field Cloud Build substitutes is substituted with markers:
``${_BASE_IMAGE_URI}`` becomes ``@BASE@``, ``${_APP_URI}`` ``@APP@``, ``${BUILD_ID}`` ``@ID@``
and so on, whether written ``$X`` or ``${X}``; an unknown or misspelt name becomes "" as in
Cloud Build. The docker commands are then collected from docker-builder steps and from
``bash -c`` / ``script`` steps, and the checks ask questions such as "which tags does the build
of @BASE@ give?" or "is @APP@:@ID@ pushed?".
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..gcloud_fake import cloudbuild as cb

COURSE_SUBSTITUTIONS = {
    "_BASE_IMAGE_URI": "@BASE@",
    "_APP_URI": "@APP@",
    "_SERVING_PORT": "@PORT@",
    "_TARGET_DOCKERFILE": "@DOCKERFILE@",
}
BASE, APP, ID, DOCKERFILE = "@BASE@", "@APP@", "@ID@", "@DOCKERFILE@"
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


def analyse(raw: Any) -> Analysis:
    data = cb.snake_to_camel(raw) if isinstance(raw, dict) else {}
    analysis = Analysis(data)
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
    for index, step in enumerate(analysis.steps):
        for command in _docker_commands(index, cb.substitute(step, values)):
            analysis.commands.append(command)
            _collect(analysis, command)
    images = data.get("images")
    if isinstance(images, list):
        for image in cb.substitute(images, values):
            if isinstance(image, str):
                analysis.pushes.add(normalize(image))
    return analysis


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
    parsed = cb.parse_docker_build(command.args)
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
