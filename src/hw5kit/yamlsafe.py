"""YAML from untrusted hands: refuse documents whose aliases or nesting would make the
processing that follows explode (an alias bomb), before anything is built from them. Shared by
the grader's reading of a submission and the fake gcloud's reading of a Cloud Build file."""

from __future__ import annotations

import yaml

MAX_YAML_ALIASES = 64
MAX_YAML_DEPTH = 64

__all__ = ["MAX_YAML_ALIASES", "MAX_YAML_DEPTH", "yaml_limits_problem"]


def yaml_limits_problem(text: str, source: str) -> str | None:
    """Why ``text`` is unsafe to load (aliases or nesting that would make later processing
    explode), or None. Runs on YAML's event stream, which does not build anything."""
    aliases = depth = deepest = 0
    try:
        for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    return (
                        f"{source} uses more than {MAX_YAML_ALIASES} YAML aliases (*name): "
                        "refused (an alias bomb would make grading explode); write the values out"
                    )
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_YAML_DEPTH:
                    return f"{source} nests deeper than {MAX_YAML_DEPTH} levels: refused"
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # the loader reports syntax errors with their position
    return None
