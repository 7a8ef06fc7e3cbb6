"""Where platformc's own data files are: the templates (Jinja sources and static files, templates/<target>/).

In a checkout (make setup's editable install, the tests, the bench) they are the repository's templates/, beside the
package. A regular install (`pip install .`, a wheel, the environments pre-commit and pipx make) has no templates/
beside the package: pyproject.toml carries the directory inside it, as compiler/templates. The packaged copy is
looked for first, because beside an installed package is site-packages, where another distribution may have put a
top-level `templates` directory of its own."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
_PACKAGED = PACKAGE / "templates"
TEMPLATES = _PACKAGED if _PACKAGED.is_dir() else PACKAGE.parent / "templates"
