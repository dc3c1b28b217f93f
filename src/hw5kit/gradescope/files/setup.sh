#!/usr/bin/env bash
# HW5 autograder: Gradescope runs this once, as root, when it builds the autograder's image,
# with the bundle unzipped in /autograder/source
# (https://gradescope-autograders.readthedocs.io/en/latest/specs/). The default base image is
# Ubuntu 22.04 (https://gradescope-autograders.readthedocs.io/en/latest/base_images/); Debian 12
# works too.
#
# It installs, from the distribution: Python 3.11 (Ubuntu 22.04: the python3.11 package of
# universe; Debian 12: its python3), bubblewrap (the grader's sandbox for the student's scripts),
# the system python3 with PyYAML (the sandbox's gcloud relay, and the students' scripts); then the kit into /opt/hw5kit from the wheels
# in this bundle only, each checked against requirements.txt's hashes (no package index is
# contacted); then checks the installation and the staff config (autograder.yaml).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=/opt/hw5kit
export DEBIAN_FRONTEND=noninteractive
log() { printf '[setup.sh %(%T)T] %s\n' -1 "$*"; }

packages=(bubblewrap)
if ! command -v python3.11 >/dev/null || ! python3.11 -c 'import ensurepip, venv' 2>/dev/null; then
  packages+=(python3.11 python3.11-venv)
fi
# The student's scripts run with the system's python3, which the course requires to have PyYAML
# (setup/check_prereq.sh checks it): the generated deploy scripts read deliverables.yaml with it.
[ -x /usr/bin/python3 ] || packages+=(python3)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || packages+=(python3-yaml)

log "apt-get install ${packages[*]}"
apt-get update -qq
if ! apt-cache show python3.11 >/dev/null 2>&1 && ! command -v python3.11 >/dev/null; then
  log "ERROR: this image's distribution has no Python 3.11 package. The kit is pinned to"
  log "Python 3.11: choose the Ubuntu 22.04 base image in the autograder settings on Gradescope."
  exit 1
fi
apt-get install -y -qq --no-install-recommends "${packages[@]}"

log "installing the kit into $VENV from the bundle's wheels (no package index)"
rm -rf "$VENV"
python3.11 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$HERE/wheels" --require-hashes -r "$HERE/requirements.txt"

chmod 0755 "$HERE/run_autograder"
"$VENV/bin/python" -m hw5kit.gradescope doctor --config "$HERE/autograder.yaml"
log "done"
