"""Where Google API Gateway runs: the regions a gateway can be deployed to, and the region code
its hostname carries (standard library only; the pipeline's config and the fake gcloud share it).

API Gateway serves fewer regions than Cloud Run. The list is the one of "API Gateway Deployment
Model", section "Choosing a Google Cloud region"
(https://cloud.google.com/api-gateway/docs/deployment-model): a gateway is reached at
``https://GATEWAY_ID-HASH.REGION_CODE.gateway.dev`` (the page's example ``...uc.gateway.dev`` for
us-central1). The other codes are Google's short region IDs as App Engine lists them ("Region
ID", https://cloud.google.com/appengine/docs/standard/how-requests-are-routed); only the fake
gcloud uses them, to answer with hostnames of the documented form.
"""

from __future__ import annotations

# Google's short region IDs (App Engine's "Region ID" list, page above): the code a Cloud Run
# hash URL (``NAME-HASH-CODE.a.run.app``) and a gateway hostname carry. One table for both.
REGION_CODES: dict[str, str] = {
    "asia-east1": "de",
    "asia-northeast1": "an",
    "australia-southeast1": "ts",
    "europe-west1": "ew",
    "europe-west2": "nw",
    "europe-west4": "ez",
    "northamerica-northeast1": "nn",
    "us-central1": "uc",
    "us-east1": "ue",
    "us-east4": "uk",
    "us-west1": "uw",
    "us-west2": "wl",
    "us-west3": "wm",
    "us-west4": "wn",
}

# The locations API Gateway serves (deployment-model page above), with their region codes.
API_GATEWAY_LOCATIONS: dict[str, str] = {
    region: REGION_CODES[region]
    for region in (
        "asia-northeast1",
        "australia-southeast1",
        "europe-west1",
        "europe-west2",
        "us-east1",
        "us-east4",
        "us-central1",
        "us-west2",
        "us-west3",
        "us-west4",
    )
}


def nearest_gateway_location(region: str) -> str:
    """A served gateway location close to ``region`` (same continent prefix), else us-central1:
    a suggestion for error messages, not a rule."""
    prefix = region.split("-", 1)[0]
    near = {
        "northamerica": "us-east4",
        "southamerica": "us-east1",
        "us": "us-central1",
        "europe": "europe-west1",
        "me": "europe-west1",
        "africa": "europe-west1",
        "asia": "asia-northeast1",
        "australia": "australia-southeast1",
    }
    return near.get(prefix, "us-central1")
