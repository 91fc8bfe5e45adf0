"""``python -m convlm ...``: the ``convlm`` command line (the same code as the binary)."""

import sys

from convlm._convlm import cli_main


def main() -> int:
    """Runs the command line with ``sys.argv`` and returns its exit status."""
    return cli_main(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
