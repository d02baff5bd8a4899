"""Names of the images hopbench builds locally and runs: shared by the build tooling that
writes them and the run path that starts pods from them (which must not import the build)."""

AGNHOST = "localhost/hopbench/agnhost"
PAUSE = "localhost/hopbench/pause"
