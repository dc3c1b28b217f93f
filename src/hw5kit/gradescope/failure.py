"""The results.json written when the grader itself cannot grade a submission.

Gradescope shows "The autograder failed to execute correctly" when run_autograder leaves no
valid ``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/troubleshooting/), and its best
practices ask for a results.json "even if the autograder fails"
(https://gradescope-autograders.readthedocs.io/en/latest/best_practices/). This one says what
went wrong: a score of 0 (the format needs a score or scored tests,
https://gradescope-autograders.readthedocs.io/en/latest/specs/#output-format), a visible
message for the student, the details for staff in ``extra_data``.

Standard library only, Python 3.6 and later: the bundle also ships this file as
``report_failure.py``, which ``run_autograder`` runs with the system's ``python3`` when the
kit's own environment cannot start (``python3 report_failure.py RESULTS STAGE MESSAGE
[LOG_FILE]``).
"""

import json
import os
import sys
import tempfile

STUDENT_MESSAGE = (
    "The autograder could not grade this submission. This is a problem with the autograder, "
    "not with your work: course staff can see what happened and will regrade it. You may "
    "also resubmit later."
)
LOG_KEPT = 4000  # characters of the log kept in extra_data


def failure_results(stage, message, log=""):
    """The results.json document: ``stage`` (config, metadata, grader, timeout, results,
    install) and ``message`` say what failed; ``log`` is the end of the grader's output."""
    return {
        "score": 0.0,
        "output": f"{STUDENT_MESSAGE}\n\nWhat went wrong ({stage}): {message}",
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [],
        "extra_data": {
            "autograder_error": {
                "stage": stage,
                "message": message,
                "log_tail": log[-LOG_KEPT:],
            }
        },
    }


def write_results(data, path):
    """Write ``data`` to ``path`` atomically (mode 0644): never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".results.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write("usage: report_failure.py RESULTS_JSON STAGE MESSAGE [LOG_FILE]\n")
        return 2
    log = ""
    if len(argv) == 4:
        try:
            with open(argv[3], encoding="utf-8", errors="replace") as fh:
                log = fh.read()[-LOG_KEPT:]
        except OSError as exc:
            log = f"(could not read {argv[3]}: {exc})"
    write_results(failure_results(argv[1], argv[2], log), argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
