"""Cloud Build, as far as the HW5 pipeline and its grader need it: the config file's schema,
substitutions, and a simulation of the docker steps against a fake Artifact Registry.

* ``load_config`` parses a config the way gcloud does (YAML or JSON, snake_case keys turned
  into camelCase, unknown keys refused) and checks it against ``cloudbuild.schema.json``,
  which encodes the fields of Google's reference (https://cloud.google.com/build/docs/build-config).
* ``apply_substitutions`` implements ``$VAR`` / ``${VAR}`` / ``$$``, the built-in variables,
  and the ``MUST_MATCH`` / ``ALLOW_LOOSE`` checks.
* ``Simulation`` runs the steps in order: ``docker build`` checks that the Dockerfile exists in
  the uploaded source and that a ``FROM`` image in Artifact Registry exists (built earlier in the
  build or pushed before); ``docker tag``, ``pull`` and ``push`` move images between the build's
  local image store and the registry. Nothing is really built: images are names and digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..confined import Folder, Listing, Plain, Unreadable
from ..yamlsafe import yaml_limits_problem

SCHEMA_PATH = Path(__file__).with_name("cloudbuild.schema.json")
DOCKER_BUILDERS = ("gcr.io/cloud-builders/docker", "docker", "docker.io/library/docker")
# Built-in substitutions, replaced by "" when a build has no value for them.
BUILTINS = (
    "PROJECT_ID",
    "BUILD_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
)
# The built-ins `gcloud builds submit --substitutions` may set (gcloud's help says so).
SETTABLE_BUILTINS = (
    "REPO_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REVISION_ID",
    "COMMIT_SHA",
    "SHORT_SHA",
)
USER_KEY_RE = re.compile(r"^_[A-Z0-9_]+$")
VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Z_][A-Z0-9_]*)")

# docker image references (github.com/distribution/reference, simplified)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"  # noqa: E501
REFERENCE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
AR_HOST_RE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev$")


class ConfigProblem(ValueError):
    """The config cannot be submitted; the message is what gcloud would print after ERROR:."""


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def snake_to_camel(data: Any, *, top: bool = True) -> Any:
    """As gcloud does before parsing (substitution keys and env strings are left alone)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            new_key = _camel(key) if isinstance(key, str) and not key.startswith("_") else key
            if new_key == "substitutions":
                out[new_key] = value
            else:
                out[new_key] = snake_to_camel(value, top=False)
        return out
    if isinstance(data, list):
        return [snake_to_camel(v, top=False) for v in data]
    return data


def schema_errors(data: Any) -> list[str]:
    """Every way ``data`` (camelCase) departs from the config schema, one line each."""
    import jsonschema  # only builds need it; the other commands start faster without it

    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path) or "."
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            for key in extra:
                out.append(f"{where.rstrip('.')}.{key}: unused")
        elif error.validator == "required":
            out.append(f"{where}: {error.message}")
        else:
            out.append(f"{where}: {error.message}")
    return out


def load_config(path: Path) -> dict[str, Any]:
    """Read (as gcloud would, size-capped and non-blocking) and check a config file."""
    try:
        data = Plain().read(str(path), Path.cwd(), flag="--config")
    except Unreadable as exc:
        raise ConfigProblem(f"Unable to read file [{path}]: {exc.reason}") from None
    return parse_config(data, str(path))


def parse_config(raw: bytes, path: str) -> dict[str, Any]:
    """Parse and check a config's bytes; ConfigProblem with gcloud's wording otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigProblem(f"parsing {path}: not a text file") from None
    problem = yaml_limits_problem(text, path)  # the fake must not explode either
    if problem:
        raise ConfigProblem(problem)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigProblem(f"parsing {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigProblem(f"parsing {path}: Could not parse as a dictionary.")
    data = snake_to_camel(data)
    if "source" in data:
        raise ConfigProblem(f"invalid build config {path}: config cannot specify source")
    if not data.get("steps"):
        raise ConfigProblem(f"invalid build config {path}: config must list at least one step")
    for key in data.get("substitutions") or {}:
        if not isinstance(key, str) or not USER_KEY_RE.match(key):
            raise ConfigProblem(
                f"invalid build config {path}: substitution key {key} does not respect format "
                f"{USER_KEY_RE.pattern}"
            )
    errors = schema_errors(data)
    if errors:
        raise ConfigProblem(f"interpreting {path} as build config: " + "; ".join(errors))
    ids = [s.get("id") for s in data["steps"] if s.get("id")]
    seen: set[str] = set()
    for index, step in enumerate(data["steps"]):
        for dep in step.get("waitFor", []):
            if dep != "-" and dep not in seen:
                known = "unknown" if dep not in ids else "a later"
                raise ConfigProblem(
                    f"INVALID_ARGUMENT: invalid build: build step {index} waits for {known} "
                    f'step "{dep}" (waitFor names the id of an earlier step, or "-")'
                )
        if step.get("id"):
            if step["id"] in seen:
                raise ConfigProblem(
                    f'INVALID_ARGUMENT: invalid build: duplicate step id "{step["id"]}"'
                )
            seen.add(step["id"])
    return data


# --- substitutions -------------------------------------------------------------------------


def template_keys(value: Any) -> set[str]:
    """The substitution names a string (or nested list/dict of strings) refers to."""
    found: set[str] = set()
    if isinstance(value, str):
        for match in VAR_RE.finditer(value):
            name = match.group(1) or match.group(2)
            if name:
                found.add(name)
    elif isinstance(value, list):
        for v in value:
            found |= template_keys(v)
    elif isinstance(value, dict):
        for v in value.values():
            found |= template_keys(v)
    return found


def substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1) or match.group(2)
            return values.get(name, "")

        return VAR_RE.sub(replace, value)
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    return value


# Where Cloud Build substitutes (not in ids or waitFor).
STEP_FIELDS = ("name", "args", "env", "dir", "entrypoint", "script", "secretEnv")


def substituted_parts(config: dict[str, Any]) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "steps": [{k: s[k] for k in STEP_FIELDS if k in s} for s in config["steps"]],
        "images": config.get("images", []),
        "artifacts": config.get("artifacts", {}),
        "tags": config.get("tags", []),
        "logsBucket": config.get("logsBucket", ""),
        "options.env": (config.get("options") or {}).get("env", []),
    }
    return parts


def apply_substitutions(
    config: dict[str, Any], given: dict[str, str], builtins: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config with substitutions applied, and the build's user substitutions.

    Raises ConfigProblem with Cloud Build's messages when MUST_MATCH checks fail."""
    for key in given:
        if not USER_KEY_RE.match(key) and key not in SETTABLE_BUILTINS:
            raise ConfigProblem(
                f"INVALID_ARGUMENT: generic::invalid_argument: invalid value for "
                f"'build.substitutions': key {key!r} is not a valid substitution key (user "
                "substitutions start with an underscore and use only uppercase letters, "
                "digits and underscores)"
            )
    user = dict(config.get("substitutions") or {})
    user.update(given)
    option = (config.get("options") or {}).get("substitutionOption", "MUST_MATCH")
    used = template_keys(substituted_parts(config))
    if option != "ALLOW_LOOSE":
        for key in sorted(used):
            if key.startswith("_") and key not in user:
                raise ConfigProblem(
                    "INVALID_ARGUMENT: generic::invalid_argument: key in the template "
                    f'"{key}" is not matched in the substitution data; substitutions = '
                    f"map[{' '.join(f'{k}:{v}' for k, v in sorted(user.items()))}]"
                )
        for key in sorted(user):
            if key not in used:
                raise ConfigProblem(
                    f'INVALID_ARGUMENT: generic::invalid_argument: key "{key}" in the '
                    "substitution data is not matched in the template"
                )
    values = {**dict.fromkeys(BUILTINS, ""), **builtins, **user}
    out = dict(config)
    out["steps"] = [
        {**s, **{k: substitute(s[k], values) for k in STEP_FIELDS if k in s}}
        for s in config["steps"]
    ]
    for key in ("images", "tags", "logsBucket", "artifacts"):
        if key in config:
            out[key] = substitute(config[key], values)
    if "options" in config and "env" in config["options"]:
        out["options"] = {**config["options"], "env": substitute(config["options"]["env"], values)}
    return out, user


# --- image references ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    domain: str  # "" for Docker Hub short names
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """The image without tag or digest (``domain/path``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def ar_location(self) -> str | None:
        match = AR_HOST_RE.match(self.domain)
        return match.group("location") if match else None

    def ar_parts(self) -> tuple[str, str, str] | None:
        """(project, repository, image) for an Artifact Registry Docker image."""
        if self.ar_location is None:
            return None
        parts = self.path.split("/")
        if len(parts) < 3:
            return None
        return parts[0], parts[1], "/".join(parts[2:])


def parse_reference(text: str) -> ImageRef | None:
    match = REFERENCE_RE.match(text or "")
    if not match:
        return None
    domain = match.group("domain") or ""
    path = match.group("path")
    # "name/x" without a dot, colon or localhost in the first part is a Docker Hub path
    if domain and "." not in domain and ":" not in domain and domain != "localhost":
        if not re.fullmatch(_COMPONENT, domain):
            return None  # a Docker Hub path component: lowercase only
        path = f"{domain}/{path}"
        domain = ""
    return ImageRef(domain, path, match.group("tag"), match.group("digest"))


def digest_of(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


# --- the simulation ------------------------------------------------------------------------


class StepFailed(Exception):
    pass


@dataclass
class Registry:
    """The registry view a simulation needs: which repositories exist, and the images."""

    project: str
    repositories: set[tuple[str, str, str]]  # (project, location, repository)
    images: dict[str, dict[str, Any]]  # repository URI -> {"tags": {tag: digest}}
    # the repositories the build's service account may push to (None: all of them)
    writable: set[tuple[str, str, str]] | None = None

    def lookup(self, ref: ImageRef) -> str | None:
        entry = self.images.get(ref.repository)
        if not entry:
            return None
        if ref.digest:
            return ref.digest if ref.digest in entry.get("tags", {}).values() else None
        return entry.get("tags", {}).get(ref.tag or "latest")


@dataclass
class Upload:
    """The source a build received: what ``gcloud builds submit`` uploaded (its folder, opened
    once, and the listing after the ignore files), read only through that folder."""

    folder: Folder
    listing: Listing

    def dir_exists(self, rel: str) -> bool:
        return rel == "." or rel in self.listing.dirs

    def read(self, rel: str, shown: str) -> bytes | None:
        """The file's bytes when it was uploaded as a regular file and still reads as one."""
        if rel not in self.listing.files:
            return None
        try:
            return self.folder.read(rel, flag="docker build", shown=shown)
        except Unreadable:
            return None


def _in_workspace(path: str, base: str = ".") -> str | None:
    """``path`` (relative to ``base``, or absolute under /workspace) as a path relative to the
    uploaded source, or None when it leaves it."""
    if path.startswith("/"):
        if path != "/workspace" and not path.startswith("/workspace/"):
            return None
        path = path[len("/workspace") :].lstrip("/") or "."
        base = "."
    joined = os.path.normpath(os.path.join(base, path))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined


@dataclass
class Simulation:
    build_id: str
    source: Upload
    registry: Registry
    local: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest
    log: list[str] = field(default_factory=list)
    pushed: list[tuple[str, str]] = field(default_factory=list)  # (repo:tag, digest)
    built: list[str] = field(default_factory=list)  # repo:tag made by a build or `docker tag`

    # -- docker commands -- #
    def run_step(self, index: int, step: dict[str, Any]) -> None:
        label = f"Step #{index}" + (f' - "{step["id"]}"' if step.get("id") else "")
        self.log.append(f"Starting {label}")
        name = step["name"]
        args = list(step.get("args", []))
        if (
            step.get("entrypoint")
            or step.get("script")
            or name.split(":")[0] not in DOCKER_BUILDERS
        ):
            shown = " ".join(shlex.quote(a) for a in [step.get("entrypoint") or name, *args])
            self.log.append(f"{label}: {shown}")
            self.log.append(f"{label}: (fake Cloud Build: this step is not simulated)")
            self.log.append(f"Finished {label}")
            return
        workdir = _in_workspace(step.get("dir", "") or ".")
        self.log.append(f"{label}: docker {' '.join(shlex.quote(a) for a in args)}")
        if not args:
            raise StepFailed("docker: no command given")
        command, rest = args[0], args[1:]
        handler = getattr(self, f"_docker_{command}", None)
        if handler is None:
            self.log.append(f"{label}: (fake Cloud Build: docker {command} is not simulated)")
        else:
            handler(rest, workdir, label)
        self.log.append(f"Finished {label}")

    def _reference(self, text: str, what: str) -> ImageRef:
        ref = parse_reference(text)
        if ref is None:
            raise StepFailed(f'invalid argument "{text}" for {what}: invalid reference format')
        return ref

    def _docker_build(self, args: list[str], workdir: str | None, label: str) -> None:
        parsed = parse_docker_build(args)
        if parsed.problems:
            raise StepFailed(parsed.problems[0])
        if parsed.unknown:
            raise StepFailed(f"unknown flag: {parsed.unknown[0]} (fake Cloud Build)")
        positional = parsed.positional
        if len(positional) != 1:
            raise StepFailed(
                f'"docker build" requires exactly 1 argument (the context), got {positional}'
            )
        context = _in_workspace(positional[0], workdir) if workdir else None
        if context is None or not self.source.dir_exists(context):
            raise StepFailed(f"unable to prepare context: path {positional[0]!r} not found")
        dockerfile_arg = parsed.files[-1] if parsed.files else None
        if dockerfile_arg:
            dockerfile = _in_workspace(dockerfile_arg, workdir or ".")
        else:
            dockerfile = os.path.normpath(os.path.join(context, "Dockerfile"))
        shown = f"/workspace/{dockerfile}" if dockerfile else str(dockerfile_arg)
        text = self.source.read(dockerfile, shown) if dockerfile else None
        if text is None:  # not uploaded (ignored, absent), or not a regular file
            raise StepFailed(
                "unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                f"lstat {shown}: no such file or directory"
            )
        tags = [self._reference(t, '"-t, --tag" flag') for t in parsed.tags]
        build_args = parsed.build_args
        for cache_from in parsed.cache_from:
            ref = self._reference(cache_from, '"--cache-from" flag')
            if ref.tagged in self.local:
                self.log.append(f"{label}: using cache from {ref.tagged}")
            else:
                self.log.append(f"{label}: cache image {ref.tagged} not found locally, ignored")
        froms = resolve_froms(text.decode("utf-8", errors="replace"), build_args)
        if froms.unused_build_args:  # docker's warning, word for word
            self.log.append(
                f"{label}: [Warning] One or more build-args [{' '.join(froms.unused_build_args)}]"
                " were not consumed"
            )
        for line in froms.froms:
            if line.from_stage:
                continue
            if not line.image:  # BuildKit's answer (moby/moby#37396)
                raise StepFailed(f"failed to solve: base name ({line.written}) should not be blank")
            self._need_base(line.image, label)
        digest = digest_of(self.build_id, shown, *parsed.tags)
        for ref in tags:
            self.local[ref.tagged] = digest
            self.built.append(ref.tagged)
            self.log.append(f"{label}: Successfully tagged {ref.tagged}")

    def _need_base(self, image: str, label: str) -> None:
        if image.lower() == "scratch":
            return
        ref = parse_reference(image)
        if ref is None:
            raise StepFailed(f'failed to parse stage name "{image}": invalid reference format')
        if ref.tagged in self.local:
            return
        if ref.ar_location is not None:
            digest = self.registry.lookup(ref)
            if digest is None:
                raise StepFailed(
                    f"manifest for {ref.tagged} not found: manifest unknown: Failed to fetch "
                    f'"{ref.tag or "latest"}"'
                )
            self.local[ref.tagged] = digest
        self.log.append(f"{label}: FROM {ref.tagged}")

    def _docker_tag(self, args: list[str], workdir: str | None, label: str) -> None:
        if len(args) != 2:
            raise StepFailed('"docker tag" requires exactly 2 arguments')
        source = self._reference(args[0], "source image")
        target = self._reference(args[1], "target image")
        if source.tagged not in self.local:
            raise StepFailed(f"No such image: {source.tagged}")
        self.local[target.tagged] = self.local[source.tagged]
        self.built.append(target.tagged)

    def _docker_pull(self, args: list[str], workdir: str | None, label: str) -> None:
        names = [a for a in args if not a.startswith("-")]
        if len(names) != 1:
            raise StepFailed('"docker pull" requires exactly 1 argument')
        ref = self._reference(names[0], "image")
        if ref.ar_location is None:
            self.local[ref.tagged] = digest_of("public", ref.tagged)
            return
        digest = self.registry.lookup(ref)
        if digest is None:
            raise StepFailed(
                f"Error response from daemon: manifest for {ref.tagged} not found: manifest unknown"
            )
        self.local[ref.tagged] = digest
        self.log.append(f"{label}: Status: Downloaded newer image for {ref.tagged}")

    def _docker_push(self, args: list[str], workdir: str | None, label: str) -> None:
        names = [a for a in args if not a.startswith("-")]
        if len(names) != 1:
            raise StepFailed('"docker push" requires exactly 1 argument')
        self.push(self._reference(names[0], "image"), label)

    def push(self, ref: ImageRef, label: str) -> None:
        if ref.tagged not in self.local:
            raise StepFailed(f"An image does not exist locally with the tag: {ref.repository}")
        parts = ref.ar_parts()
        if parts is None:
            raise StepFailed(
                f"denied: pushing {ref.tagged} is not modelled by the fake Cloud Build: push to "
                "Artifact Registry (LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE)"
            )
        project, repository, _image = parts
        key = (project, ref.ar_location or "", repository)
        writable = self.registry.writable
        if project != self.registry.project or (
            writable is not None and key in self.registry.repositories and key not in writable
        ):
            raise StepFailed(
                f'denied: Permission "artifactregistry.repositories.uploadArtifacts" denied on '
                f'resource "projects/{project}/locations/{ref.ar_location}/repositories/'
                f'{repository}" (or it may not exist)'
            )
        if (project, ref.ar_location, repository) not in self.registry.repositories:
            raise StepFailed(
                f'name unknown: Repository "{repository}" not found in project {project}, '
                f"location {ref.ar_location}"
            )
        digest = self.local[ref.tagged]
        entry = self.registry.images.setdefault(ref.repository, {"tags": {}})
        entry["tags"][ref.tag or "latest"] = digest
        self.pushed.append((ref.tagged, digest))
        self.log.append(f"{label}: {ref.tag or 'latest'}: digest: {digest} size: 2841")


ARG_RE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.I)
FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.I)
REF_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class FromLine:
    """One ``FROM`` of a Dockerfile, resolved as docker does with the build's arguments."""

    line: int  # 1-based
    written: str  # as written, e.g. ${BASE_IMAGE}
    image: str  # after the ARGs before the first FROM are applied ("" when they expand to it)
    stage: str | None  # its ``AS name``
    from_stage: bool  # it names an earlier stage, not an image
    unset: tuple[str, ...]  # ARGs it uses that got no value (no build argument, no default)
    undeclared: tuple[str, ...]  # names it uses that no ARG before the first FROM declares


@dataclass
class DockerfileFroms:
    froms: list[FromLine]
    declared: dict[str, int]  # every ARG name -> the line of its first declaration
    unused_build_args: list[str]  # build arguments no ARG consumes (docker warns about them)

    @property
    def images(self) -> list[str]:
        """The external images the FROM lines name (stage names excluded)."""
        return [f.image for f in self.froms if not f.from_stage]


def resolve_froms(text: str, build_args: dict[str, str]) -> DockerfileFroms:
    """A Dockerfile's FROM lines resolved with ``build_args`` the way docker does: only the
    ARGs declared before the first FROM apply, a build argument overrides the ARG's default,
    an ARG without either is empty."""
    args: dict[str, str] = {}
    declared: dict[str, int] = {}
    stages: set[str] = set()
    froms: list[FromLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        match = ARG_RE.match(line)
        if match:
            name, default = match.group(1), match.group(2)
            declared.setdefault(name, number)
            if not froms:
                value = build_args.get(name, (default or "").strip("\"'"))
                args[name] = value
            continue
        match = FROM_RE.match(line)
        if not match:
            continue
        written = match.group(1)
        unset: list[str] = []
        undeclared: list[str] = []

        def expand(m: re.Match, unset=unset, undeclared=undeclared) -> str:
            name = m.group(1) or m.group(3)
            if name not in args:
                undeclared.append(name)
            elif not args[name] and not m.group(2):
                unset.append(name)
            return args.get(name) or (m.group(2) or "")

        image = REF_VAR_RE.sub(expand, written)
        alias = re.search(r"\sAS\s+(\S+)\s*$", line, re.I)
        froms.append(
            FromLine(
                number,
                written,
                image,
                alias.group(1) if alias else None,
                image in stages,
                tuple(unset),
                tuple(undeclared),
            )
        )
        if alias:
            stages.add(alias.group(1))
    unused = [name for name in build_args if name not in declared]
    return DockerfileFroms(froms, declared, unused)


# ---- `docker build` arguments, shared with the grader's reading of Cloud Build configs ----------
DOCKER_BUILD_VALUE_FLAGS = {
    "-t": "tag",
    "--tag": "tag",
    "-f": "file",
    "--file": "file",
    "--build-arg": "build_arg",
    "--cache-from": "cache_from",
}
DOCKER_BUILD_OTHER_VALUE_FLAGS = frozenset(
    {
        "--target", "--platform", "--network", "--label", "--progress", "--secret", "--ssh",
        "--add-host", "--iidfile", "--shm-size", "--memory", "--cpu-shares", "--ulimit",
        "--output", "-o",
    }
)  # fmt: skip
DOCKER_BUILD_SWITCHES = frozenset(
    {"--no-cache", "--pull", "-q", "--quiet", "--rm", "--force-rm", "--squash"}
)


@dataclass
class DockerBuildArgs:
    """``docker build`` arguments sorted out; ``problems`` and ``unknown`` say what is wrong."""

    tags: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    build_arg_items: list[str] = field(default_factory=list)
    cache_from: list[str] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def build_args(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.build_arg_items)


def parse_docker_build(args: list[str]) -> DockerBuildArgs:
    """Read ``docker build`` arguments (after ``build``) the way docker does."""
    out = DockerBuildArgs()
    lists = {
        "tag": out.tags,
        "file": out.files,
        "build_arg": out.build_arg_items,
        "cache_from": out.cache_from,
    }
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        takes_value = name in DOCKER_BUILD_VALUE_FLAGS or name in DOCKER_BUILD_OTHER_VALUE_FLAGS
        if arg.startswith("-") and takes_value:
            if not eq:
                if i + 1 >= len(args):
                    out.problems.append(f"flag needs an argument: {arg}")
                    break
                i += 1
                value = args[i]
            if name in DOCKER_BUILD_VALUE_FLAGS:
                lists[DOCKER_BUILD_VALUE_FLAGS[name]].append(value)
        elif arg in DOCKER_BUILD_SWITCHES:
            pass
        elif arg.startswith("-") and arg != "-":
            out.unknown.append(arg)
        else:
            out.positional.append(arg)
        i += 1
    return out
