import sys

try:
    from gowide.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line itself is imported
    print("gowide: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
