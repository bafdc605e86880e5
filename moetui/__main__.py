import sys

from moetui.cli import main

sys.exit(main())
