"""python -m edgenet.cli ... runs the command line (same as python -m edgenet)."""
from edgenet.cli import main

main()
