#!/usr/bin/env bash
# Run a command in a freezer cgroup that is frozen most of the time in random bursts:
# a stand-in for a hypervisor taking the VM's CPU (steal), which comes in whole seconds.
# Each cycle freezes for U(0.2, FROZEN_MAX_S) s, then thaws for U(0.2, THAWED_MAX_S) s;
# 1.5 0.6 freezes ~68% of the time, like the 70% steal that failed CI.
# CPU hogs (even niced) are no stand-in: the scheduler interleaves them in milliseconds,
# and the jobs never go seconds without the CPU.
# Needs root and the cgroup v1 freezer (/sys/fs/cgroup/freezer).
# usage: tools/stealsim.sh FROZEN_MAX_S THAWED_MAX_S command...
# e.g.   tools/stealsim.sh 1.5 0.6 env CI=true bash .ci/run
set -u
if [ $# -lt 3 ] || [ ! -d /sys/fs/cgroup/freezer ]; then
  echo "usage: $0 FROZEN_MAX_S THAWED_MAX_S command... (root, cgroup v1 freezer)" >&2
  exit 2
fi
frozen_max=$1; thawed_max=$2; shift 2
cg=/sys/fs/cgroup/freezer/stealsim.$$
mkdir -p "$cg"
( while [ -d "$cg" ]; do
    echo FROZEN > "$cg/freezer.state" 2>/dev/null
    sleep "$(python3 -c "import random; print(round(random.uniform(0.2, $frozen_max), 2))" 2>/dev/null)"
    echo THAWED > "$cg/freezer.state" 2>/dev/null
    sleep "$(python3 -c "import random; print(round(random.uniform(0.2, $thawed_max), 2))" 2>/dev/null)"
  done ) &
toggler=$!
bash -c "echo \$\$ > $cg/cgroup.procs; exec \"\$@\"" _ "$@"
rc=$?
kill $toggler 2>/dev/null; wait $toggler 2>/dev/null
echo THAWED > "$cg/freezer.state"
for p in $(cat "$cg/cgroup.procs"); do echo "$p" > /sys/fs/cgroup/freezer/cgroup.procs; done
rmdir "$cg"
exit $rc
