"""Only the package list lives here (everything else is in pyproject.toml): the source packages under
moetui/ plus the two data folders at the top of the repository that the wheel carries as moetui.presets
and moetui.assets (mapped in [tool.setuptools.package-dir]), which packages.find cannot express."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["moetui", "moetui.*"]), "moetui.presets", "moetui.assets"])
