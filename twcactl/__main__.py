"""Console entry point.

``twcactl --version`` is answered here before click is imported, so a
version probe costs little more than starting Python (issue 7's start-up
target).  Any other command goes to the resident process for its home
when one runs (:mod:`twcactl.forwarder`), else runs here.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the CLI; exits the process with the contract's exit status."""
    if sys.argv[1:] == ["--version"]:
        from twcactl import __version__

        sys.stdout.write(f"twcactl {__version__}\n")
        raise SystemExit(0)
    # A resident process for the home (``twcactl resident start``) runs the command warm (issue 29).
    import os

    from twcactl.platform_dirs import resident_dir

    if os.path.isdir(resident_dir()):
        from twcactl.forwarder import forward

        status = forward(sys.argv[1:])
        if status is not None:
            raise SystemExit(status)
    from twcactl.cli import run

    run()


if __name__ == "__main__":
    main()
