#!/usr/bin/env bash
# Check the Google Cloud prerequisites of HW5, with the course's checks and messages, plus what
# the course's script reads but never checks: the project exists, the repository holds Docker
# images, the autograder's service account can read it, and Cloud Build's service account has
# the roles its builds need (read the uploaded source, write logs, push to the repository).
#
# Usage: setup/check_prereq.sh [--student-id ID] [--region REGION] [--repository NAME]
#                              [--autograder-service-account EMAIL] [--api-gateway]
#   --student-id: else $STUDENT_ID, else it is asked for (as the course's script does).
#   --region: else $PROJECT_REGION, else us-central1.
#   --repository: the Artifact Registry repository, else $REPO_NAME, else hw5-images.
#   --autograder-service-account: else $TA_SERVICE_ACCOUNT, else the course's test account
#     ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com (the production one is
#     ta-autograder@ift6758-hw5-gcp-24.iam.gserviceaccount.com).
#   --api-gateway: also check the APIs v3's API Gateway needs (apigateway, servicemanagement,
#     servicecontrol), else when $CHECK_API_GATEWAY is 1; the pipeline passes it with v3.
#   `nox -s setup` provisions all of it and runs this script with the values of deployment.yaml.
#   Exit status 0 when everything is in place, 1 at the first problem, 2 a bad option.
set -uo pipefail

usage() {
    sed -n '2,18s/^# \{0,1\}//p' "$0"
}

student_id="${STUDENT_ID:-}"
PROJECT_REGION="${PROJECT_REGION:-us-central1}"
REPO_NAME="${REPO_NAME:-hw5-images}"
TA_SERVICE_ACCOUNT="${TA_SERVICE_ACCOUNT:-ift6758-ta-hw5-gcp-autograder@hw5-12345.iam.gserviceaccount.com}"
api_gateway="${CHECK_API_GATEWAY:-0}"
# value_of OPTION VALUE: the option's value, or a usage error when it is missing
value_of() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "option $1 needs a value" >&2
        usage >&2
        exit 2
    fi
    printf '%s' "$2"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --student-id) student_id="$(value_of "$@")" || exit 2; shift 2 ;;
        --student-id=*) student_id="${1#*=}"; shift ;;
        --region) PROJECT_REGION="$(value_of "$@")" || exit 2; shift 2 ;;
        --region=*) PROJECT_REGION="${1#*=}"; shift ;;
        --repository) REPO_NAME="$(value_of "$@")" || exit 2; shift 2 ;;
        --repository=*) REPO_NAME="${1#*=}"; shift ;;
        --autograder-service-account) TA_SERVICE_ACCOUNT="$(value_of "$@")" || exit 2; shift 2 ;;
        --autograder-service-account=*) TA_SERVICE_ACCOUNT="${1#*=}"; shift ;;
        --api-gateway) api_gateway=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$student_id" ]; then
    read -r -p "Enter your student ID: " student_id
fi
# Strip leading and trailing whitespace from the student ID
student_id="$(printf '%s' "$student_id" | sed 's/^[[:space:]]*//;s/[[:space:]]*$//')"
if [ -z "$student_id" ]; then
    echo "No student ID given. Pass --student-id ID or set STUDENT_ID."
    exit 1
fi

echo "Checking if gcloud is installed..."
if ! command -v gcloud >/dev/null 2>&1; then
    echo "gcloud is not installed. Please install gcloud before running this script."
    exit 1
fi

PROJECT_ID="hw5-${student_id}"
# gcloud's error messages go here, so that its warnings never mix with the values read
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
# show_errors: what gcloud said, indented
show_errors() {
    sed 's/^/  /' "$errors"
}

echo "Checking if the project is set to ${PROJECT_ID}..."
project_name="$(gcloud config get-value project 2>/dev/null)"
if [ "$project_name" != "${PROJECT_ID}" ]; then
    echo "Project is not set to ${PROJECT_ID}. Please set the project to ${PROJECT_ID} before running this script."
    exit 1
fi

echo "Checking if the project ${PROJECT_ID} exists..."
if ! project_state="$(gcloud projects describe "${PROJECT_ID}" --format="value(lifecycleState)" 2>"$errors")"; then
    echo "Project ${PROJECT_ID} does not exist or your account cannot access it. Please create the project ${PROJECT_ID} (name and ID) before running this script."
    show_errors
    exit 1
fi
if [ "$project_state" != "ACTIVE" ]; then
    echo "Project ${PROJECT_ID} is not active (state: ${project_state}). Please restore it or create the project ${PROJECT_ID} before running this script."
    exit 1
fi

if ! enabled="$(gcloud services list --enabled --format="value(config.name)" 2>"$errors")"; then
    echo "Could not list the services enabled in ${PROJECT_ID}:"
    show_errors
    exit 1
fi
check_api() {
    local label="$1" api="$2"
    echo "Checking if ${label} is enabled..."
    if ! grep -qx "$api" <<<"$enabled"; then
        echo "${label} is not enabled. Please enable ${label} before running this script."
        exit 1
    fi
}
check_api "Cloud Run" run.googleapis.com
check_api "Cloud Build" cloudbuild.googleapis.com
check_api "Artifact Registry" artifactregistry.googleapis.com
if [ "$api_gateway" = 1 ]; then
    # v3: Google API Gateway needs these three (https://cloud.google.com/api-gateway/docs/configure-dev-env)
    for gateway_api in "API Gateway:apigateway.googleapis.com" \
        "Service Management:servicemanagement.googleapis.com" \
        "Service Control:servicecontrol.googleapis.com"; do
        label="${gateway_api%%:*}" api="${gateway_api#*:}"
        echo "Checking if ${label} is enabled (v3: API Gateway)..."
        if ! grep -qx "$api" <<<"$enabled"; then
            echo "${label} is not enabled. Please enable ${label} before running this script (v3's API gateway needs it; \`nox -s setup\` enables it):"
            echo "  gcloud services enable apigateway.googleapis.com servicemanagement.googleapis.com servicecontrol.googleapis.com --project=${PROJECT_ID}"
            exit 1
        fi
    done
fi

REPO_PATH="${PROJECT_REGION}-docker.pkg.dev/${PROJECT_ID}/${REPO_NAME}"
echo "Checking if a Docker registry exists with the following setup:"
echo " - Location: ${PROJECT_REGION}"
echo " - Repository: ${REPO_NAME}"
if repo_format="$(gcloud artifacts repositories describe "${REPO_NAME}" \
    --project="${PROJECT_ID}" \
    --location="${PROJECT_REGION}" \
    --format="value(format)" 2>/dev/null)"; then
    echo "Repository ${REPO_PATH} exists"
else
    echo "Repository ${REPO_PATH} does not exist"
    exit 1
fi
if [ "$repo_format" != "DOCKER" ]; then
    echo "Repository ${REPO_NAME} in ${PROJECT_REGION} holds ${repo_format} packages, not Docker images. Please create a Docker repository (--repository-format=docker) before running this script."
    exit 1
fi

echo "Checking if python is installed..."
if ! command -v python3 >/dev/null 2>&1; then
    echo "Python may not be installed. Please double check your Python installation before running this script."
fi

echo "Checking if python has yaml package..."
if ! python3 -c "import yaml" >/dev/null 2>&1; then
    echo "Python does not have the yaml package. Please install the yaml package (pyyaml) before running this script."
    exit 1
fi

# The autograder pulls the images: its service account needs read access to the repository
# (roles/artifactregistry.reader, or a role that includes it), granted without a condition.
echo "Checking if the autograder service account ${TA_SERVICE_ACCOUNT} can read ${REPO_PATH}..."
if ! iam_policy="$(gcloud artifacts repositories get-iam-policy "${REPO_NAME}" \
    --project="${PROJECT_ID}" \
    --location="${PROJECT_REGION}" \
    --format="json" 2>"$errors")"; then
    echo "Could not read the IAM policy of ${REPO_PATH}:"
    show_errors
    exit 1
fi
can_read='
import json, sys
member = "serviceAccount:" + sys.argv[1]
roles = {"roles/artifactregistry." + r for r in (
    "reader", "writer", "createOnPushWriter", "repoAdmin", "createOnPushRepoAdmin", "admin")}
roles |= {"roles/viewer", "roles/editor", "roles/owner"}
try:
    bindings = json.load(sys.stdin).get("bindings", [])
except (ValueError, AttributeError) as exc:
    sys.exit("the IAM policy is not a JSON object: %s" % exc)
sys.exit(0 if any(
    b.get("role") in roles and member in b.get("members", []) and not b.get("condition")
    for b in bindings) else 3)
'
python3 -c "$can_read" "${TA_SERVICE_ACCOUNT}" <<<"$iam_policy"
case $? in
    0) ;;
    3)
        echo "The autograder service account ${TA_SERVICE_ACCOUNT} does not have read access to ${REPO_PATH}. Please grant it the Artifact Registry Reader role before running this script:"
        echo "  gcloud artifacts repositories add-iam-policy-binding ${REPO_NAME} --project=${PROJECT_ID} --location=${PROJECT_REGION} --member=serviceAccount:${TA_SERVICE_ACCOUNT} --role=roles/artifactregistry.reader"
        exit 1 ;;
    *)
        echo "Could not read the IAM policy of ${REPO_PATH} (see above)."
        exit 1 ;;
esac

# Cloud Build's identity: projects created since mid-2024 build as the Compute Engine default
# service account, which an organization policy may leave without any role; builds then fail
# fetching their source, writing logs or pushing images
# (https://cloud.google.com/build/docs/cloud-build-service-account-updates).
echo "Checking if Cloud Build's service account can read the uploaded source, write logs and push to ${REPO_PATH}..."
if ! build_account="$(gcloud builds get-default-service-account \
    --project="${PROJECT_ID}" \
    --region="${PROJECT_REGION}" \
    --format="value(serviceAccountEmail)" 2>"$errors")"; then
    echo "Could not read which service account Cloud Build runs builds as (gcloud components update if gcloud does not know the command):"
    show_errors
    exit 1
fi
build_account="${build_account##*/}"
if [ -z "$build_account" ]; then
    echo "Cloud Build has no default service account in ${PROJECT_ID}: builds would need --service-account."
    exit 1
fi
if ! project_policy="$(gcloud projects get-iam-policy "${PROJECT_ID}" --format="json" 2>"$errors")"; then
    echo "Could not read the IAM policy of ${PROJECT_ID}:"
    show_errors
    exit 1
fi
# the roles that give each need (the first of each is the one to grant); the pipeline's setup
# grants from the same lists
build_roles='
import json, sys
member = "serviceAccount:" + sys.argv[1]
basic = {"roles/editor", "roles/owner", "roles/cloudbuild.builds.builder"}
writers = {"roles/artifactregistry." + r for r in (
    "writer", "createOnPushWriter", "repoAdmin", "createOnPushRepoAdmin", "admin")}
needs = (
    ("project", "roles/storage.objectViewer", "read the uploaded source",
     {"roles/storage.objectViewer", "roles/storage.objectAdmin", "roles/storage.admin"} | basic),
    ("project", "roles/logging.logWriter", "write build logs",
     {"roles/logging.logWriter", "roles/logging.admin"} | basic),
    ("repository", "roles/artifactregistry.writer", "push images", writers | basic),
)
def roles(text):
    try:
        bindings = json.loads(text or "{}").get("bindings", [])
    except (ValueError, AttributeError) as exc:
        sys.exit("an IAM policy is not a JSON object: %s" % exc)
    return {b.get("role") for b in bindings
            if member in b.get("members", []) and not b.get("condition")}
project, repository = roles(sys.argv[2]), roles(sys.stdin.read())
missing = [(scope, role, why) for scope, role, why, covering in needs
           if not (project | (repository if scope == "repository" else set())) & covering]
for scope, role, why in missing:
    print(scope, role, why.replace(" ", "_"))
sys.exit(3 if missing else 0)
'
missing_roles="$(python3 -c "$build_roles" "${build_account}" "${project_policy}" <<<"$iam_policy")"
case $? in
    0) ;;
    3)
        echo "Cloud Build's service account ${build_account} lacks roles its builds need. Please grant them before running this script (\`nox -s setup\` does):"
        while read -r scope role why; do
            echo "  (to ${why//_/ })"
            if [ "$scope" = repository ]; then
                echo "  gcloud artifacts repositories add-iam-policy-binding ${REPO_NAME} --project=${PROJECT_ID} --location=${PROJECT_REGION} --member=serviceAccount:${build_account} --role=${role}"
            else
                echo "  gcloud projects add-iam-policy-binding ${PROJECT_ID} --member=serviceAccount:${build_account} --role=${role} --condition=None"
            fi
        done <<<"$missing_roles"
        exit 1 ;;
    *)
        echo "Could not read the IAM policies of ${PROJECT_ID} (see above)."
        exit 1 ;;
esac

echo "All prerequisites are met. You can proceed with the assignment."
exit 0
