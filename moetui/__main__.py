import sys

try:
    from moetui.cli import main
except KeyboardInterrupt:  # Ctrl-C at start-up: no traceback
    sys.exit(130)

sys.exit(main())
