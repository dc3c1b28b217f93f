"""hw5kit.lazy: a package's exports are imported on first use, not with the package."""

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_submodule_does_not_import_its_package_s_other_exports():
    loaded = _modules_after("import hw5kit.gateway.spec")
    assert "hw5kit.gateway.spec" in loaded
    assert "hw5kit.gateway.app" not in loaded and "flask" not in loaded


def test_an_export_is_imported_when_it_is_used():
    loaded = _modules_after(
        "from hw5kit.gateway import GatewayApp\nfrom hw5kit.grading import grade"
    )
    assert {"hw5kit.gateway.app", "hw5kit.grading.grader"} <= loaded


def test_an_unknown_name_is_an_attribute_error():
    import hw5kit.gateway
    import hw5kit.grading

    for package in (hw5kit.gateway, hw5kit.grading):
        with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
            package.nothing  # noqa: B018
