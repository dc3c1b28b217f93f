"""Q3.1-Q3.7 and Q6.1-Q6.7: the deploy scripts, by the ``gcloud run deploy`` each made in the
sandbox (it runs and deploys; the image, the port and, for a frontend, SERVING_URL)."""

from __future__ import annotations

from ... import naming
from ...gcloud_fake import docker
from ..builds import parse_key_values
from ..cloud import Call
from ..context import SLOTS, Context
from ..evidence import Evidence, line_of
from ..outcome import Outcome
from ..runs import deploy_script_name, where
from .common import deploy_runs_of, describe_run, output_tail, script_of, shown_call
from .registry import deployed, scripted


def _deploy_where(ctx: Context, call: Call, *needles: str) -> str:
    return line_of(ctx.snapshot, script_of(ctx, call), *needles, "run deploy")


@scripted("deploy_runs")
def deploy_runs(ctx: Context, app: str) -> Outcome:
    runs = deploy_runs_of(ctx, app)
    name = deploy_script_name(app)
    if not runs or runs[0].problem:
        problem = runs[0].problem if runs else "not run"
        if problem == "not found":
            problem = f"{name} not found (looked in deployment/ and at the top of the submission)"
        return Outcome.fail(
            problem,
            evidence=Evidence(
                f"(no {name})" if "not found" in problem else name, problem, f"deployment/{name}"
            ),
        )
    lines = [f"{where(runs[0].rel or name)}"]
    lines += ctx.runs.deploy_notes.get(app, [])
    lines += [describe_run(r) for r in runs]
    calls = ctx.runs.deploy_calls(app)
    good = [c for c in calls if c.exit == 0]
    if good:
        call = good[-1]
        lines.append(f"  {shown_call(ctx, call)}")
        lines.append(f"  -> {call.service_url}")
        if not call.flags.get("--allow-unauthenticated"):
            lines.append(
                "  note: without --allow-unauthenticated the service answers 403 to browsers and "
                "to the frontend, unless allUsers was granted roles/run.invoker another way"
            )
        return Outcome.ok(*lines)
    asked = [c for run in runs for c in run.calls if c.argv[:2] == ["run", "deploy"]]
    if asked:
        return Outcome.fail(
            *lines,
            f"`{shown_call(ctx, asked[-1])}` failed: {asked[-1].error()}",
            evidence=Evidence(
                _deploy_where(ctx, asked[-1]),
                f"gcloud: {asked[-1].error()}",
                "a `gcloud run deploy` that succeeds",
            ),
        )
    return Outcome.fail(
        *lines,
        "the script never called `gcloud run deploy`",
        *output_tail(ctx, runs[-1]),
        evidence=Evidence(
            runs[0].rel or name,
            describe_run(runs[-1]) + ", no `gcloud run deploy`",
            f"a `gcloud run deploy` of {app}",
        ),
    )


@deployed("deploy_image")
def deploy_image(ctx: Context, app: str, call: Call) -> Outcome:
    image = str(call.flags.get("--image") or "")
    expected_repo = naming.image_uri(
        ctx.assignment["region"], ctx.project or "", ctx.assignment["repository"], app
    )
    at = _deploy_where(ctx, call, "--image")

    def fail(message: str, expected: str = f"{expected_repo}:BUILD_ID") -> Outcome:
        return Outcome.fail(message, evidence=Evidence(at, f"--image={image}", expected))

    if not image:
        return fail("no --image: deploy the image Cloud Build pushed")
    ref = docker.parse_reference(image)
    if ref is None:
        return fail(f"--image={image} is not an image reference")
    if ref.repository != expected_repo:
        other = ref.repository.rsplit("/", 1)[-1]
        if ref.repository.rsplit("/", 1)[0] == ctx.registry and other in ctx.assignment["apps"]:
            return fail(f"deploys the {other} image, not {app}: {image}")
        return fail(
            f"--image={image} is not in the student's registry: expected {expected_repo}:BUILD_ID"
        )
    if ref.digest:
        return Outcome.ok(f"--image={image}")
    recorded = ctx.build_id(app)
    if not ref.tag or ref.tag == "latest":
        return fail(
            f"--image={image}: the app image is tagged with its build ID only, so "
            f"{expected_repo}:latest does not exist; deploy {expected_repo}:BUILD_ID"
        )
    if recorded and ref.tag != recorded:
        return fail(
            f"--image={image}: deliverables.yaml records build {recorded} for {app}; deploy that "
            "build (or record the one deployed)",
            f"{expected_repo}:{recorded}",
        )
    if not recorded and not naming.is_build_id(ref.tag):
        return fail(f"--image={image}: the tag {ref.tag!r} is not a build ID")
    return Outcome.ok(f"--image={image}")


@deployed("deploy_port")
def deploy_port(ctx: Context, app: str, call: Call) -> Outcome:
    port = call.flags.get("--port")
    expected = str(ctx.assignment["serving_port"])
    at = _deploy_where(ctx, call, "--port")
    if port is None:
        return Outcome.fail(
            f"no --port: Cloud Run would send requests to 8080, the app listens on {expected}",
            evidence=Evidence(at, "no --port (Cloud Run's default 8080)", f"--port={expected}"),
        )
    if str(port) != expected:
        return Outcome.fail(
            f"--port={port}; the app listens on {expected} (_SERVING_PORT)",
            evidence=Evidence(at, f"--port={port}", f"--port={expected}"),
        )
    return Outcome.ok(f"--port={port}")


def _deliverables_urls(ctx: Context) -> list[str]:
    return [u for app in SLOTS for u in [ctx.service_url(app)] if u]


@deployed("serving_url")
def serving_url(ctx: Context, app: str, call: Call) -> Outcome:
    """SERVING_URL against the backend's URL, across Cloud Run's two URL forms
    (``naming.compare_run_urls``): the one deliverables.yaml records (a real URL: name,
    region and project compared) and the one the grader's fake deploy gave (name and region
    only: the fake's project stands in for the student's)."""
    version = SLOTS[app][0]
    backend = f"backend_{version}"
    env = parse_key_values(str(call.flags.get("--set-env-vars") or ""))
    env.update(parse_key_values(str(call.flags.get("--update-env-vars") or "")))
    value = env.get("SERVING_URL")
    at = _deploy_where(ctx, call, "SERVING_URL", "--set-env-vars")
    if value is None:
        return Outcome.fail(
            "the frontend is deployed without SERVING_URL (--set-env-vars=SERVING_URL=...): it "
            "cannot reach its backend",
            evidence=Evidence(at, "no SERVING_URL", f"SERVING_URL=<the {backend} URL>"),
        )
    evidence = naming.ProjectEvidence.of(_deliverables_urls(ctx))
    candidates = [
        (ctx.service_url(backend), "the URL deliverables.yaml records for it", True),
        (ctx.runs.backend_urls.get(version), "the URL its deploy gave", False),
    ]
    compared = []
    for url, label, real in candidates:
        if url:
            result = naming.compare_run_urls(value, url, evidence, ignore_project=not real)
            compared.append((url, label, result))
    same = [label for _url, label, result in compared if result.same]
    if same:
        return Outcome.ok(f"SERVING_URL={value}: {backend}, {' and '.join(same)}")
    recorded = [c for c in compared if c[1] == candidates[0][1]]
    for _url, label, result in recorded or compared:  # the fake's only without a real URL
        if result.same is None:
            return Outcome.ok(f"SERVING_URL={value}: {backend}, {label}: {result.note}")
    other = "v2" if version == "v1" else "v1"
    for url in (ctx.service_url(f"backend_{other}"), ctx.runs.backend_urls.get(other)):
        if url and naming.compare_run_urls(value, url, evidence).same is not False:
            return Outcome.fail(
                f"SERVING_URL={value} is the {other} backend, not the {version} one",
                evidence=Evidence(
                    at,
                    f"SERVING_URL={value} (the {other} backend)",
                    f"the {backend} URL {candidates[0][0] or ''}".strip(),
                ),
            )
    if not compared:
        return Outcome.fail(
            f"SERVING_URL={value!r}: no {backend} URL anywhere to compare it with",
            evidence=Evidence(at, f"SERVING_URL={value}", f"the {backend} URL"),
        )
    url, label, result = compared[0]
    return Outcome.fail(
        f"SERVING_URL={value!r} is not the {backend} URL ({label}: {url}): {result.describe()}",
        evidence=Evidence(at, f"SERVING_URL={value} ({result.describe()})", url),
    )
