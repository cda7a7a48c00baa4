#!/usr/bin/env python
"""Django's command-line utility for RadTrust."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radtrust.settings")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
