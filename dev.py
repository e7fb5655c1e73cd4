"""Set up a local environment on first use, then serve the site or run the tests.

    python dev.py serve      # the English and Chinese site on http://127.0.0.1:8000
    python dev.py test       # the whole test suite (extra arguments go to pytest)
    python dev.py build      # mkdocs build --strict into site/

Only Python 3.11+ is assumed. The environment lives in .venv/ and is reinstalled
when pyproject.toml changes.
"""

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".pyproject.sha256"


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"Creating {VENV.name}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [
        str(PYTHON),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    # Dependency groups (PEP 735) need pip 25.1 or newer.
    subprocess.run([*pip, "--upgrade", "pip>=25.1"], check=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    subprocess.run(
        [*pip, *project["dependencies"], "--group", "dev"], check=True, cwd=ROOT
    )
    STAMP.write_text(wanted)


def main() -> int:
    command, *args = sys.argv[1:] or ["help"]
    programs = {
        "serve": ["mkdocs", "serve", "--dev-addr", "127.0.0.1:8000", *args],
        "build": ["mkdocs", "build", "--strict", *args],
        "test": ["pytest", *args],
    }
    if command not in programs:
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_environment()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    program, *rest = programs[command]
    return subprocess.run([str(BIN / program), *rest], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
