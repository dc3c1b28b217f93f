"""The names of the assignment's Google Cloud resources: one set of rules for the pipeline
(``pipeline/config.py``), the grader (``grading/``) and the fake gcloud (``gcloud_fake/``).

Each rule says where it comes from:

* **Project ID** (Resource Manager, https://cloud.google.com/resource-manager/docs/creating-managing-projects):
  6 to 30 characters, lowercase letters, digits and hyphens, starting with a letter, not
  ending with a hyphen, and not containing restricted strings such as ``google``, ``null``,
  ``undefined`` or ``ssl``.
* **Student ID**: the course's project is ``hw5-<student ID>``, so a student ID is whatever
  makes that a valid project ID: 2 to 26 lowercase letters, digits or hyphens, not ending with
  a hyphen (a matricule such as ``20261234`` in practice).
* **Cloud Run service name** (Cloud Run Admin API, ``projects.locations.services.create``,
  https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services/create:
  "It must begin with letter, and cannot end with hyphen; must contain fewer than 50
  characters"; lowercase letters, digits and hyphens only, as the API's error says). gcloud
  itself checks less before sending the request (lowercase letters, digits and dashes, not
  starting or ending with a dash, at most 63 characters: ``GCLOUD_SERVICE_NAME_RE``); the
  fake gcloud checks both, in that order, with the two messages. At most 49 characters is also
  what keeps the name whole in both URL forms below (a DNS label has at most 63 characters).
* **Build ID**: Cloud Build names each build with a UUID
  (``Created [https://cloudbuild.googleapis.com/v1/projects/P/locations/L/builds/ID]``).
* **Image URI** (Artifact Registry, https://cloud.google.com/artifact-registry/docs/docker/names):
  ``LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST]``; a repository ID is
  lowercase letters, digits and hyphens, starting with a letter, at most 63 characters; an
  image name is lowercase path components separated by ``.``, ``_`` or ``-``.
* **Cloud Run settings**: environment variable names are letters, digits and underscores,
  not starting with a digit, and Cloud Run sets ``PORT``, ``K_SERVICE``, ``K_REVISION``,
  ``K_CONFIGURATION`` itself (https://cloud.google.com/run/docs/container-contract#env-vars);
  ``--memory`` takes a size such as ``512Mi`` or ``2Gi``
  (https://cloud.google.com/run/docs/configuring/services/memory-limits) and ``--cpu`` 1, 2, 4,
  8, a fraction below 1 or millicpu (https://cloud.google.com/run/docs/configuring/services/cpu).
* **API Gateway IDs** (API, API config, gateway;
  https://cloud.google.com/api-gateway/docs/creating-api): lowercase letters, digits and
  hyphens, starting with a letter, at most 63 characters. An API config cannot change once
  made, so its ID names the document's content (``api_config_id``).
* **Service accounts** (IAM, https://cloud.google.com/iam/docs/service-accounts-create): a
  user-managed account is ``ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com``, the account ID 6 to
  30 lowercase letters, digits and hyphens, starting with a letter.
* **The kit's own names** (``deployment.yaml``): a service key names ``apps/<name>``,
  ``Dockerfile.<name>`` and the image ``<name>``, so it is lowercase letters, digits and single
  underscores; its Cloud Run service is the key without underscores unless
  ``cloud_run_name`` says otherwise, and a v3 group's model ``m`` runs as
  ``<cloud_run_name>-m`` (underscores become hyphens) in the service ``<key>_m``.
* **Cloud Run URLs** (https://cloud.google.com/run/docs/triggering/https-request): every
  service has the hash-based URL ``https://SERVICE-HASH-REGIONCODE.a.run.app`` and, when "the
  DNS segment" (service name, project number, traffic tag) has at most 63 characters, the
  deterministic URL ``https://SERVICE-PROJECTNUMBER.REGION.run.app``; ``gcloud run services
  describe --format='value(status.url)'`` may print either ("the deterministic URL is given
  priority when displayed").

What two URLs of these forms say about "the same service" (``compare_run_urls``): the
deterministic form names the service, the project (by number) and the region; the hash form
names the service and the region (by its two-letter code), and its HASH is the same for every
service of one project (https://github.com/ahmetb/runsd/issues/24: "the project hash is
project-wide") but is not derived from anything public: the hash form carries no project name
or number. So two URLs of one form are the same service exactly when the name, the region and
the project part (hash or number) agree; across the two forms, the name and the region can be
compared but the project cannot: the answer is then "same name and region, project unknown"
(``same is None``), never a guess. The grader credits that case and says so.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .gcp_regions import REGION_CODES

PROJECT_PREFIX = "hw5-"
# The course's service accounts: the autograder's test account (the default) and its production
# one, given read access to the repository by `nox -s setup`.
COURSE_TEST_AUTOGRADER = "ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com"
COURSE_AUTOGRADER = "ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com"

# --- projects and students -----------------------------------------------------------------

PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
RESTRICTED_IN_PROJECT_ID = ("google", "null", "undefined", "ssl")
STUDENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,24}[a-z0-9]$")
STUDENT_ID_RULE = (
    "2 to 26 lowercase letters, digits or hyphens, not ending with a hyphen (the project is "
    f"{PROJECT_PREFIX}<student ID>, a Google Cloud project ID of at most 30 characters)"
)


def normalize_student_id(text: str) -> str:
    return str(text).strip().lower()


def project_id_problem(project: str) -> str | None:
    """Why ``project`` is not a valid Google Cloud project ID (None: it is one)."""
    if not PROJECT_ID_RE.match(project):
        return (
            f"the project ID {project!r} is not a valid Google Cloud project ID (6 to 30 "
            "lowercase letters, digits or hyphens, starting with a letter, not ending with a "
            "hyphen)"
        )
    restricted = [word for word in RESTRICTED_IN_PROJECT_ID if word in project]
    if restricted:
        return (
            f"the project ID {project!r} is not a valid Google Cloud project ID (it contains "
            f"{restricted[0]!r}, which project IDs may not contain)"
        )
    return None


def student_id_problem(student_id: str) -> str | None:
    """Why ``student_id`` (already normalized) cannot be a student ID (None: it can)."""
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", student_id):
        return f"expected your student ID ({STUDENT_ID_RULE}), got {student_id!r}"
    return project_id_problem(project_id(student_id))


def project_id(student_id: str) -> str:
    return f"{PROJECT_PREFIX}{student_id}"


# --- regions and Artifact Registry ---------------------------------------------------------

REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
REPOSITORY_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
AR_IMAGE_RE = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[a-z0-9.:-]+)/"
    r"(?P<repository>[a-z0-9-]+)/(?P<image>[a-z0-9._/-]+?)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def docker_host(region: str) -> str:
    return f"{region}-docker.pkg.dev"


def repository_uri(region: str, project: str, repository: str) -> str:
    return f"{docker_host(region)}/{project}/{repository}"


def image_uri(region: str, project: str, repository: str, image: str, tag: str = "") -> str:
    uri = f"{repository_uri(region, project, repository)}/{image}"
    return f"{uri}:{tag}" if tag else uri


@dataclass(frozen=True)
class ImageUri:
    location: str
    project: str
    repository: str
    image: str
    tag: str | None
    digest: str | None

    @property
    def repository_uri(self) -> str:
        return repository_uri(self.location, self.project, self.repository)

    @property
    def uri(self) -> str:
        """The image without tag or digest."""
        return f"{self.repository_uri}/{self.image}"


def parse_image_uri(text: str) -> ImageUri | None:
    """An Artifact Registry Docker image reference, split in its parts (None: not one)."""
    match = AR_IMAGE_RE.match(str(text or "").strip())
    if not match:
        return None
    return ImageUri(
        match["location"],
        match["project"],
        match["repository"],
        match["image"],
        match["tag"],
        match["digest"],
    )


# --- Cloud Build ---------------------------------------------------------------------------

BUILD_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_build_id(text: object) -> bool:
    return isinstance(text, str) and bool(BUILD_ID_RE.match(text))


# --- Cloud Run service names ---------------------------------------------------------------

CLOUD_RUN_NAME_MAX = 49
CLOUD_RUN_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")
CLOUD_RUN_NAME_RULE = (
    "lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen, "
    f"at most {CLOUD_RUN_NAME_MAX} characters (Cloud Run's rule)"
)
# What gcloud checks itself before sending the request (gcloud's own message says 63).
GCLOUD_SERVICE_NAME_RE = re.compile(r"(?=^[a-z0-9-]{1,63}$)(?!^\-.*)(?!.*\-$)")


def cloud_run_name_problem(name: str) -> str | None:
    if CLOUD_RUN_NAME_RE.match(name):
        return None
    if len(name) > CLOUD_RUN_NAME_MAX:
        return f"{name!r} has {len(name)} characters: expected {CLOUD_RUN_NAME_RULE}"
    return f"{name!r}: expected {CLOUD_RUN_NAME_RULE}"


# --- Cloud Run settings, API Gateway, IAM ---------------------------------------------------

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CLOUD_RUN_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
CLOUD_RUN_MEMORY_RE = re.compile(r"^[1-9][0-9]*(Mi|Gi)$")
CLOUD_RUN_CPU_RE = re.compile(r"^([1248]|0\.[0-9]*[1-9]|[1-9][0-9]{1,2}m)$")
GATEWAY_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
SERVICE_ACCOUNT_RE = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)


def api_config_id(api_id: str, spec_text: str) -> str:
    """An API config ID naming the OpenAPI document's content (configs cannot be changed)."""
    return f"{api_id}-{hashlib.sha256(spec_text.encode()).hexdigest()[:10]}"[:63]


def compute_service_account(project_number: str) -> str:
    """The Compute Engine default service account: Cloud Run's runtime identity by default."""
    return f"{project_number}-compute@developer.gserviceaccount.com"


# --- deployment.yaml's own names ------------------------------------------------------------

SERVICE_NAME_RE = re.compile(r"^(?!.*__)[a-z][a-z0-9_]{0,48}$")
SERVICE_NAME_RULE = (
    "lowercase letters, digits and single underscores, starting with a letter (it names "
    "apps/<name>, Dockerfile.<name> and the image)"
)
IMAGE_COMPONENT_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")  # one path component
MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def default_cloud_run_name(service: str) -> str:
    """A service's Cloud Run name when ``cloud_run_name`` is not set: the key without ``_``."""
    return service.replace("_", "")


def model_service_name(group: str, model: str) -> str:
    """The service of one model of a v3 group (``backend_v3`` + ``efficientnet_lite0``)."""
    return f"{group}_{model}"


def model_cloud_run_name(group_run_name: str, model: str) -> str:
    """Its Cloud Run service: the group's name, a hyphen, the model with hyphens."""
    return f"{group_run_name}-{model.replace('_', '-')}"


# --- Cloud Run URLs ------------------------------------------------------------------------

# Region codes of the hash-based *.a.run.app URLs: one table with API Gateway's hostnames.
CODE_REGIONS = {code: region for region, code in REGION_CODES.items()}
HASH_LENGTH = 10
_TAG = r"(?:(?P<tag>[a-z0-9-]+)---)?"
HASH_URL_RE = re.compile(
    rf"^https://{_TAG}(?P<service>[a-z0-9-]+)-(?P<hash>[a-z0-9]{{{HASH_LENGTH}}})-"
    r"(?P<code>[a-z]{2})\.a\.run\.app/?$"
)
DETERMINISTIC_URL_RE = re.compile(
    rf"^https://{_TAG}(?P<service>[a-z0-9-]+)-(?P<number>[0-9]{{6,19}})\."
    r"(?P<region>[a-z]+(?:-[a-z]+)+[0-9]+)\.run\.app/?$"
)


def project_hash(project: str) -> str:
    """The fake's stand-in for a project's URL hash: stable, the same for every service and
    region of the project, as Cloud Run's is (the real one cannot be computed)."""
    digest = hashlib.sha256(f"run-url/{project}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[b % 32] for b in digest[:HASH_LENGTH])


def hash_url(service: str, project_hash_: str, region: str) -> str | None:
    code = REGION_CODES.get(region)
    if code is None:
        return None
    return f"https://{service}-{project_hash_}-{code}.a.run.app"


def deterministic_url(service: str, project_number: str, region: str) -> str | None:
    if len(f"{service}-{project_number}") > 63:  # "only available for DNS segments of 63 or less"
        return None
    return f"https://{service}-{project_number}.{region}.run.app"


def service_urls(project: str, project_number: str, region: str, service: str) -> list[str]:
    """Both URLs of a service, the one ``status.url`` shows first."""
    urls = [
        hash_url(service, project_hash(project), region),
        deterministic_url(service, project_number, region),
    ]
    return [u for u in urls if u]


@dataclass(frozen=True)
class RunUrl:
    """A Cloud Run URL split into what it says."""

    url: str
    form: str  # "hash" | "deterministic"
    service: str
    region: str | None  # None: a hash URL whose region code the kit does not know
    region_code: str | None
    project_hash: str | None = None
    project_number: str | None = None
    tag: str | None = None

    @property
    def region_shown(self) -> str:
        if self.region and self.region_code:
            return f"{self.region} ({self.region_code})"
        return self.region or f"the region of code {self.region_code!r}"

    @property
    def project_shown(self) -> str:
        if self.form == "deterministic":
            return f"project number {self.project_number}"
        return f"project hash {self.project_hash}"


def parse_run_url(url: str) -> RunUrl | None:
    text = str(url or "").strip()
    match = HASH_URL_RE.match(text)
    if match:
        code = match["code"]
        return RunUrl(
            text,
            "hash",
            match["service"],
            CODE_REGIONS.get(code),
            code,
            project_hash=match["hash"],
            tag=match["tag"],
        )
    match = DETERMINISTIC_URL_RE.match(text)
    if match:
        region = match["region"]
        return RunUrl(
            text,
            "deterministic",
            match["service"],
            region,
            REGION_CODES.get(region),
            project_number=match["number"],
            tag=match["tag"],
        )
    return None


@dataclass
class ProjectEvidence:
    """What a submission's other URLs show of its project: the hashes and numbers they carry."""

    hashes: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, urls) -> ProjectEvidence:
        out = cls()
        for url in urls:
            parsed = parse_run_url(url) if url else None
            if parsed and parsed.project_hash:
                out.hashes.add(parsed.project_hash)
            if parsed and parsed.project_number:
                out.numbers.add(parsed.project_number)
        return out


@dataclass(frozen=True)
class UrlComparison:
    same: bool | None  # None: the name and region agree, the project cannot be told
    differences: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        if self.same:
            return self.note or "the same service"
        if self.same is None:
            return self.note
        return "; ".join(self.differences)


def compare_run_urls(
    found: str,
    expected: str,
    evidence: ProjectEvidence | None = None,
    *,
    ignore_project: bool = False,
) -> UrlComparison:
    """Whether ``found`` and ``expected`` name the same Cloud Run service (see the module's
    docstring), and if not, which part differs. ``evidence`` (the project parts the rest of the
    submission shows) settles the project across the two forms when it can;
    ``ignore_project`` compares the name and the region only (``expected`` comes from a
    stand-in project, such as the fake gcloud's)."""
    a, b = parse_run_url(found), parse_run_url(expected)
    if a is None or b is None:
        same = str(found).strip().rstrip("/") == str(expected).strip().rstrip("/")
        which = found if a is None else expected
        return UrlComparison(same, () if same else (f"{which} is not a Cloud Run URL",))
    differences = []
    if a.service != b.service:
        differences.append(f"service name {a.service!r}, not {b.service!r}")
    if a.tag != b.tag:
        differences.append(f"traffic tag {a.tag!r}, not {b.tag!r}")
    if a.region and b.region:
        if a.region != b.region:
            differences.append(f"region {a.region_shown}, not {b.region_shown}")
    elif a.region_code and b.region_code and a.region_code != b.region_code:
        differences.append(f"region code {a.region_code!r}, not {b.region_code!r}")
    note = ""
    if ignore_project:
        if differences:
            return UrlComparison(False, tuple(differences))
        if a.url.rstrip("/") == b.url.rstrip("/"):
            return UrlComparison(True)
        return UrlComparison(
            None, (), f"same service name and region as {expected} (the project not compared)"
        )
    if a.form == b.form:
        if a.form == "hash" and a.project_hash != b.project_hash:
            differences.append(
                f"project hash {a.project_hash!r}, not {b.project_hash!r} (another project)"
            )
        if a.form == "deterministic" and a.project_number != b.project_number:
            differences.append(
                f"project number {a.project_number}, not {b.project_number} (another project)"
            )
        if differences:
            return UrlComparison(False, tuple(differences))
        if a.url.rstrip("/") != b.url.rstrip("/"):
            note = "the same service"
        return UrlComparison(True, (), note)
    if differences:
        return UrlComparison(False, tuple(differences))
    # across the two forms: settle the project with the submission's other URLs, if they can
    deterministic = a if a.form == "deterministic" else b
    hashed = b if deterministic is a else a
    known = evidence or ProjectEvidence()
    if known.numbers and deterministic.project_number not in known.numbers:
        return UrlComparison(
            False,
            (
                f"project number {deterministic.project_number}, while the submission's other "
                f"URLs show {', '.join(sorted(known.numbers))} (another project)",
            ),
        )
    if known.hashes and hashed.project_hash not in known.hashes:
        return UrlComparison(
            False,
            (
                f"project hash {hashed.project_hash!r}, while the submission's other URLs show "
                f"{', '.join(sorted(known.hashes))} (another project)",
            ),
        )
    return UrlComparison(
        None,
        (),
        f"same service name and region in the two URL forms ({found} and {expected}); the "
        "-HASH-REGIONCODE.a.run.app form carries no project name or number, so the project "
        "cannot be compared: taken to be the same service",
    )
