"""No installed dependency is below its security floor, and requirements.txt does not allow one.

Each floor is the first release with the fix; requirements.txt pins at least that.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"

FLOORS = {
    # CVE-2026-44545 (no frame size limit), CVE-2026-44546 (upgrade-header smuggling).
    "daphne": "4.2.2",
    # 5.2.1 skipped signature checks; 5.3 is the first release above it we accept.
    "djangorestframework-simplejwt": "5.3",
    # Before 4.5.4 a cancelled command could leave its reply for the next caller.
    "redis": "4.5.4",
    # Django 5.2 LTS security releases up to 5.2.8.
    "Django": "5.2.8",
}


def _declared() -> dict[str, Requirement]:
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            out[canonicalize_name(requirement.name)] = requirement
    return out


@pytest.mark.parametrize("package,floor", FLOORS.items())
def test_installed_version_is_at_or_above_its_floor(package, floor):
    installed = Version(version(package))
    assert installed >= Version(floor), f"{package} {installed} is below its security floor {floor}"


@pytest.mark.parametrize("package,floor", FLOORS.items())
def test_requirements_forbid_versions_below_the_floor(package, floor):
    requirement = _declared().get(canonicalize_name(package))
    assert requirement is not None, f"{package} is not pinned in requirements.txt"
    lowest = [Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", ">", "==", "~=")]
    assert lowest and min(lowest) >= Version(floor), f"requirements.txt allows {package} {requirement.specifier}"
    below = Version(floor).release
    just_below = Version(".".join(map(str, [*below[:-1], below[-1] - 1]))) if below[-1] > 0 else None
    if just_below is not None:
        assert not requirement.specifier.contains(just_below, prereleases=True)
