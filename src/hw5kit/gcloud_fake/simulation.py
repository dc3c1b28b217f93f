"""Cloud Build's steps, simulated against a fake Artifact Registry: ``docker build`` checks
that the Dockerfile exists in the uploaded source and that a ``FROM`` image in Artifact Registry
exists (built earlier in the build or pushed before); ``docker tag``, ``pull`` and ``push`` move
images between the build's local image store and the registry. Nothing is really built: images
are names and digests (``docker.py`` reads the references, Dockerfiles and arguments).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..confined import Folder, Listing, Unreadable
from .cloudbuild import DOCKER_BUILDERS
from .docker import ImageRef, digest_of, parse_docker_build, parse_reference, resolve_froms


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
        if parts is None and ref.ar_location is not None:
            raise StepFailed(
                f"name invalid: {ref.repository} is not an Artifact Registry image name "
                "(LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE: a repository ID is lowercase "
                "letters, digits and hyphens)"
            )
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
