"""Console entry point.

``twcactl --version`` is answered here before click is imported, so a
version probe costs little more than starting Python (issue 7's start-up
target).
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the CLI; exits the process with the contract's exit status."""
    if sys.argv[1:] == ["--version"]:
        from twcactl import __version__

        sys.stdout.write(f"twcactl {__version__}\n")
        raise SystemExit(0)
    from twcactl.cli import run

    run()


if __name__ == "__main__":
    main()
