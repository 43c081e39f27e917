"""python -m edgenet ... runs the command line."""
from edgenet.cli import main

main()
