#!/usr/bin/env bash
# Check the Google Cloud prerequisites of HW5, with the course's checks and messages.
#
# Usage: setup/check_prereq.sh [--student-id ID]
#   The student ID comes from --student-id, else $STUDENT_ID, else it is asked for (as the
#   course's script does). Exit status 0 when everything is in place, 1 at the first problem.
set -uo pipefail

usage() {
    sed -n '2,6s/^# \{0,1\}//p' "$0"
}

student_id="${STUDENT_ID:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --student-id) student_id="${2:-}"; shift 2 || { usage >&2; exit 2; } ;;
        --student-id=*) student_id="${1#*=}"; shift ;;
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
PROJECT_REGION="us-central1"

echo "Checking if the project is set to ${PROJECT_ID}..."
project_name="$(gcloud config get-value project 2>/dev/null)"
if [ "$project_name" != "${PROJECT_ID}" ]; then
    echo "Project is not set to ${PROJECT_ID}. Please set the project to ${PROJECT_ID} before running this script."
    exit 1
fi

enabled="$(gcloud services list --enabled --format="value(config.name)" 2>/dev/null)"
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

REPO_NAME="hw5-images"
REPO_PATH="${PROJECT_REGION}-docker.pkg.dev/${PROJECT_ID}/${REPO_NAME}"
echo "Checking if a Docker registry exists with the following setup:"
echo " - Location: ${PROJECT_REGION}"
echo " - Repository: ${REPO_NAME}"
if gcloud artifacts repositories describe "${REPO_NAME}" \
    --project="${PROJECT_ID}" \
    --location="${PROJECT_REGION}" >/dev/null 2>&1; then
    echo "Repository ${REPO_PATH} exists"
else
    echo "Repository ${REPO_PATH} does not exist"
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

echo "All prerequisites are met. You can proceed with the assignment."
exit 0
