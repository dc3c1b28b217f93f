"""Who may call a Cloud Run service, for the gcp target. ``gcloud run deploy
--allow-unauthenticated`` only warns when an organization policy refuses ``allUsers``
(https://cloud.google.com/run/docs/authenticating/public), so every deploy script is followed by
a look at the service's IAM policy: a service that is not public stops its chain with the remedy
(``--no-invoker-iam-check``), which ``nox -s deploy -- --target gcp --no-invoker-iam-check``
applies itself."""

from __future__ import annotations

import shlex

from ...deployment import Service
from ...gcloud import is_public, parse_json, public_access_fix
from ...project import PipelineError
from .cloud import Part


class Access(Part):
    def open_invoker(self, s: Service) -> str:
        """Turn the service's Invoker IAM check off (the documented way to a public service
        under domain-restricted sharing); "" once it is public."""
        argv = [
            "gcloud",
            "run",
            "services",
            "update",
            s.cloud_run_name,
            f"--project={self.config.project_id}",
            f"--region={self.config.region}",
            "--no-invoker-iam-check",
        ]
        self.project.log(f"[{s.name}] not public (allUsers refused): {shlex.join(argv)}")
        done = self.cloud.call(
            argv,
            timeout=self.waits.deploy,
            prefix=f"[{s.name}]",
            check=f"`gcloud run services describe {s.cloud_run_name} "
            f"--region={self.config.region}`, then deploy again.",
        )
        if done.returncode != 0:
            raise PipelineError(
                "turning its Invoker IAM check off failed: "
                f"{(done.stderr or done.stdout).strip()[-400:]}\n  "
                + public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id)
            )
        return self.public_problem(s)

    def public_problem(self, s: Service) -> str:
        """ "" when anyone may invoke the service, else the remedy: after
        ``--allow-unauthenticated`` its IAM policy must let allUsers invoke it, or its Invoker
        IAM check must be off."""
        where = [f"--project={self.config.project_id}", f"--region={self.config.region}"]
        looks = {}
        for what, argv in (
            ("policy", ["gcloud", "run", "services", "get-iam-policy", s.cloud_run_name]),
            ("service", ["gcloud", "run", "services", "describe", s.cloud_run_name]),
        ):
            done = self.cloud.call(
                [*argv, *where, "--format=json"],
                timeout=self.waits.look,
                prefix=f"[{s.name}]",
                check="your network and `gcloud auth list`, then run deploy again.",
            )
            if done.returncode != 0:
                raise PipelineError(
                    f"could not read the {what} of Cloud Run service {s.cloud_run_name}: "
                    f"{(done.stderr or done.stdout).strip()[-400:]}"
                )
            looks[what] = parse_json(done.stdout)
            if what == "policy" and is_public(looks["policy"], None):
                return ""
        if is_public(looks["policy"], looks["service"]):
            return ""
        return public_access_fix(s.cloud_run_name, self.config.region, self.config.project_id)
