"""What Docker itself decides, for the fake Cloud Build and the grader alike: image references
(their Artifact Registry parts by ``hw5kit.naming``'s rule), a Dockerfile's ``FROM`` lines
resolved with the build's arguments, and ``docker build``'s arguments.

* ``parse_reference`` follows Docker's reference grammar (github.com/distribution/reference,
  simplified): ``[DOMAIN/]PATH[:TAG][@DIGEST]``, a first part without a dot, a colon or
  ``localhost`` being a Docker Hub path; an image on an Artifact Registry host
  (``LOCATION-docker.pkg.dev``) is split as ``hw5kit.naming.parse_image_uri`` splits it.
* ``resolve_froms``: only the ``ARG``s declared before the first ``FROM`` apply to it, a build
  argument overrides the ``ARG``'s default, an ``ARG`` without either is empty; docker warns
  about build arguments no ``ARG`` consumes.
* ``parse_docker_build``: the flags the kit and students' Cloud Build steps use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .. import naming

# docker image references (github.com/distribution/reference, simplified)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"  # noqa: E501
REFERENCE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

# the Artifact Registry Docker host of a location (naming.docker_host): LOCATION-docker.pkg.dev
AR_HOST_SUFFIX = naming.docker_host("")


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
        """The location of an Artifact Registry Docker host (``LOCATION-docker.pkg.dev``)."""
        location = self.domain.removesuffix(AR_HOST_SUFFIX)
        if location == self.domain or not re.fullmatch(r"[a-z0-9-]+", location):
            return None
        return location

    def ar_parts(self) -> tuple[str, str, str] | None:
        """(project, repository, image) of an Artifact Registry Docker image, split by
        ``hw5kit.naming``'s rule (None: not one, or a name Artifact Registry refuses)."""
        uri = naming.parse_image_uri(self.repository) if self.ar_location else None
        return (uri.project, uri.repository, uri.image) if uri else None


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


# --- a Dockerfile's FROM lines -----------------------------------------------------------------

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
