"""Only what pyproject.toml cannot say: configs/ (beside the package in the repository) ships as csrv2.configs."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["csrv2*"]), "csrv2.configs"],
    package_dir={"csrv2.configs": "configs"},
)
