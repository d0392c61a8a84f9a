import sys

from borne.cli import main

sys.exit(main())
