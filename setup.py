"""Build step: copy the newsroom's files (the repository's top-level folders stay the source of
truth) into the wheel as `digest/shipped/`, where `digest.config.SHIPPED` finds them."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# Keep in step with digest.scaffold.NEWSROOM_FILES (tests/test_packaging.py checks the wheel).
NEWSROOM_FILES = ("digest.toml", "templates", "subscribers/example.csv", "cron")


class BuildWithNewsroomFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads the top-level folders themselves
        here = Path(__file__).resolve().parent
        shipped = Path(self.build_lib) / "digest" / "shipped"
        for name in NEWSROOM_FILES:
            source, target = here / name, shipped / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)


setup(cmdclass={"build_py": BuildWithNewsroomFiles})
