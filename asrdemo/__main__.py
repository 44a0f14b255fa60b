import sys

from asrdemo.cli import main

sys.exit(main())
